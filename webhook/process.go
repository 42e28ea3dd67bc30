package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/writeback"
)

// commitReader reads when an app's source commit was made.
type commitReader interface {
	GetCommit(ctx context.Context, project, sha string) (gitlab.Commit, error)
}

// fileReader reads a file of the GitOps repository at a commit.
type fileReader interface {
	File(ctx context.Context, project, path, ref string) (gitlab.File, error)
}

// dispatcher turns a stored delivery into promotion events for each app it
// concerns and has the runner apply them, all with one config snapshot.
type dispatcher struct {
	config        *configSource
	runner        *runner
	commits       commitReader
	files         fileReader
	authors       *authorsReader
	gitopsProject string
	bot           promotion.User
	now           func() time.Time
	log           *slog.Logger
}

// process handles one delivery; hook is its body decoded when the intake
// handed it over, nil otherwise.
func (p *dispatcher) process(ctx context.Context, d store.Delivery, hook *gitlabHook) error {
	snap, err := p.config.current(ctx)
	if err != nil {
		return fmt.Errorf("read lotse.yaml: %w", err)
	}
	var occ []occurrence
	switch d.Source {
	case "gitlab":
		if !handledEvents[d.Event] {
			return nil
		}
		if hook == nil {
			if hook, err = parseGitLab(d.Body); err != nil {
				return decodeError(err)
			}
		}
		if d.Event == "Push Hook" && touchesConfig(hook) {
			if snap, err = p.config.reload(ctx); err != nil {
				return fmt.Errorf("reload lotse.yaml: %w", err)
			}
		}
		occ, err = decodeHook(d.Event, hook, p.gitopsProject, snap.config.GitLab.DefaultBranch, p.bot)
	case "argocd":
		occ, err = decodeArgoCD(d.Body)
	default:
		return decodeError(fmt.Errorf("unknown source %q", d.Source))
	}
	if err != nil {
		return err
	}
	for _, o := range byStage(snap, occ) {
		pol, ok := snap.policyAt(o.App, p.now())
		if !ok {
			p.log.InfoContext(ctx, "delivery for an app lotse.yaml does not define", "app", o.App, "id", d.ID)
			continue
		}
		ev, err := p.events(ctx, snap, o, d.ReceivedAt)
		if err != nil {
			return err
		}
		if err := p.runner.apply(ctx, snap, pol, ev); err != nil {
			return fmt.Errorf("app %s: %w", o.App, err)
		}
	}
	return nil
}

// tickParallel is how many apps a tick works on at once: one app waiting on
// a slow registry or GitLab does not hold up the others.
const tickParallel = 4

// tick sends the passage of time to every app, a few at a time.
func (p *dispatcher) tick(ctx context.Context) {
	snap, err := p.config.current(ctx)
	if err != nil {
		p.log.WarnContext(ctx, "timer: lotse.yaml not readable", "err", err)
		return
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, tickParallel)
	for _, app := range snap.apps() {
		pol, _ := snap.policyAt(app, p.now())
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := p.runner.apply(ctx, snap, pol, []promotion.Event{promotion.Tick{}}); err != nil && ctx.Err() == nil {
				p.log.WarnContext(ctx, "timer", "app", app, "err", err)
			}
		})
	}
	wg.Wait()
}

// freeze sets or lifts a stop-the-line freeze of stage ("" for every
// stage) in every app (POST/DELETE /api/v1/freeze).
func (p *dispatcher) freeze(ctx context.Context, stage, reason string, lift bool) error {
	snap, err := p.config.current(ctx)
	if err != nil {
		return fmt.Errorf("read lotse.yaml: %w", err)
	}
	if stage != "" {
		if _, err := snap.config.Stage(stage); err != nil {
			return &badRequest{reason: err.Error()}
		}
	}
	for _, app := range snap.apps() {
		pol, _ := snap.policyAt(app, p.now())
		ev := promotion.Freeze{Stage: stage, Reason: reason, By: promotion.User{Username: "lotsed API (admin token)"}, Lift: lift}
		if err := p.runner.apply(ctx, snap, pol, []promotion.Event{ev}); err != nil {
			return fmt.Errorf("app %s: %w", app, err)
		}
	}
	return nil
}

// touchesConfig reports whether a push changed lotse.yaml.
func touchesConfig(p *gitlabHook) bool {
	for _, c := range p.Commits {
		for _, l := range [][]string{c.Added, c.Modified, c.Removed} {
			for _, f := range l {
				if f == writeback.ConfigFile {
					return true
				}
			}
		}
	}
	return false
}

// byStage gives the changes of values files without lotse trailers the app
// and stage whose values file they changed (one per app of a shared file);
// other occurrences pass as they are.
func byStage(snap *snapshot, occ []occurrence) []occurrence {
	var out []occurrence
	for _, o := range occ {
		if o.Kind != "changed" {
			out = append(out, o)
			continue
		}
		for _, a := range snap.config.Apps {
			stages, err := snap.config.StagesFor(a.Name)
			if err != nil {
				continue
			}
			for _, st := range stages {
				if path := a.ValuesPath(st.Name); slices.Contains(o.Files, path) {
					c := o
					c.App, c.Stage, c.Body = a.Name, st.Name, path
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// events turns an occurrence into state machine events, with the facts
// lotsed reads itself. received is when lotsed received the delivery: a
// landing's time (soak counts from it, not from a committer-set
// timestamp) and a health report's.
func (p *dispatcher) events(ctx context.Context, snap *snapshot, o occurrence, received time.Time) ([]promotion.Event, error) {
	iid := int(o.IID)
	if received.IsZero() {
		received = p.now()
	}
	switch o.Kind {
	case "landed":
		mismatch, err := p.mismatch(ctx, snap, o)
		if err != nil {
			return nil, err
		}
		ev := promotion.Landed{Stage: o.Stage, Image: o.Image, SourceProject: o.SourceProject, SourceCommit: o.SourceCommit,
			Commit: o.Commit, Head: o.Head, Pusher: o.User, Mismatch: mismatch, At: received}
		ev.ChangeAuthors, ev.AuthorsErr = p.authors.read(ctx, o.SourceProject, o.SourceCommit)
		return []promotion.Event{ev}, nil
	case "changed":
		return []promotion.Event{promotion.OutOfBandChange{Stage: o.Stage, Commit: o.Commit, Pusher: o.User,
			Reason: o.Body + " changed without lotse trailers", At: received}}, nil
	case "mr":
		switch o.Action {
		case "update":
			return []promotion.Event{promotion.MRUpdated{Stage: o.Stage, IID: iid, SHA: o.SHA, Pusher: o.User}}, nil
		case "approved":
			return []promotion.Event{promotion.MRApproved{Stage: o.Stage, IID: iid, User: o.User, SHA: o.SHA}}, nil
		case "unapproved":
			return []promotion.Event{promotion.MRUnapproved{Stage: o.Stage, IID: iid, User: o.User}}, nil
		case "merge":
			return []promotion.Event{promotion.MRMerged{Stage: o.Stage, IID: iid, By: o.User}}, nil
		case "close":
			return []promotion.Event{promotion.MRClosed{Stage: o.Stage, IID: iid}}, nil
		}
	case "note":
		return []promotion.Event{promotion.Command{Stage: o.Stage, IID: iid, NoteID: o.NoteID, User: o.User, Text: o.Body}}, nil
	case "health":
		return []promotion.Event{promotion.Health{Stage: o.Stage, Healthy: o.Healthy, Degraded: o.Degraded, Reason: o.Reason,
			Revision: o.Revision, Images: o.Images, At: received}}, nil
	case "pipeline":
		return []promotion.Event{promotion.Tick{}}, nil // a finished pipeline may make an MR mergeable
	}
	return nil, nil
}

// mismatch compares a commit with lotse trailers with the change it
// carries: it must change the stage's values file and nothing else, and the
// file must then hold the image the trailers name. Empty: they match.
func (p *dispatcher) mismatch(ctx context.Context, snap *snapshot, o occurrence) (string, error) {
	app, err := snap.config.App(o.App)
	if err != nil {
		return "", nil // the engine refuses the app
	}
	path := app.ValuesPath(o.Stage)
	if len(o.Files) != 1 || o.Files[0] != path {
		return fmt.Sprintf("it changes %s, not just %s", strings.Join(o.Files, ", "), path), nil
	}
	f, err := p.files.File(ctx, p.gitopsProject, path, o.Commit)
	if err != nil {
		return "", fmt.Errorf("read %s at %s: %w", path, o.Commit, err)
	}
	img, ok, err := app.CurrentImage(f.Content)
	switch {
	case err != nil:
		return fmt.Sprintf("%s does not read as values: %v", path, err), nil
	case !ok:
		return path + " holds no image for " + o.App, nil
	}
	claimed, err := gitops.ParseImageRef(o.Image)
	if err != nil || claimed.Repository != img.Repository || claimed.Digest != img.Digest {
		return fmt.Sprintf("%s holds %s, the trailers say %s", path, img, o.Image), nil
	}
	return "", nil
}
