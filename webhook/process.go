package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/writeback"
)

// commitReader reads what lotsed needs to know about an app's source
// commit: when it was made, and the MRs that brought it in.
type commitReader interface {
	GetCommit(ctx context.Context, project, sha string) (gitlab.Commit, error)
	MRsForCommit(ctx context.Context, project, sha string) ([]gitlab.MR, error)
}

// landingLog records the versions that landed, for DORA.
type landingLog interface {
	RecordLanding(ctx context.Context, l store.Landing) (bool, error)
}

// dispatcher turns a stored delivery into promotion events for each app it
// concerns and has the runner apply them, all with one config snapshot.
type dispatcher struct {
	config        *configSource
	runner        *runner
	commits       commitReader
	landings      landingLog
	gitopsProject string
	bot           string
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
	for _, o := range occ {
		pol, ok := snap.policy(o.App)
		if !ok {
			p.log.InfoContext(ctx, "delivery for an app lotse.yaml does not define", "app", o.App, "id", d.ID)
			continue
		}
		ev, err := p.events(ctx, o)
		if err != nil {
			return err
		}
		if err := p.runner.apply(ctx, snap, pol, ev); err != nil {
			return fmt.Errorf("app %s: %w", o.App, err)
		}
	}
	return nil
}

// tick sends the passage of time to every app.
func (p *dispatcher) tick(ctx context.Context) {
	snap, err := p.config.current(ctx)
	if err != nil {
		p.log.WarnContext(ctx, "timer: lotse.yaml not readable", "err", err)
		return
	}
	for _, app := range snap.apps() {
		pol, _ := snap.policy(app)
		if err := p.runner.apply(ctx, snap, pol, []promotion.Event{promotion.Tick{}}); err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "timer", "app", app, "err", err)
		}
	}
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

// events turns an occurrence into state machine events, with the facts
// lotsed reads itself.
func (p *dispatcher) events(ctx context.Context, o occurrence) ([]promotion.Event, error) {
	iid := int(o.IID)
	switch o.Kind {
	case "landed":
		l := store.Landing{App: o.App, Stage: o.Stage, Image: o.Image, SourceCommit: o.SourceCommit, LandedAt: o.At,
			CommittedAt: p.committedAt(ctx, o.SourceProject, o.SourceCommit), Rollback: o.Rollback}
		if _, err := p.landings.RecordLanding(ctx, l); err != nil {
			return nil, err
		}
		return []promotion.Event{promotion.Landed{Stage: o.Stage, Image: o.Image, SourceProject: o.SourceProject,
			SourceCommit: o.SourceCommit, ChangeAuthors: p.changeAuthors(ctx, o.SourceProject, o.SourceCommit), Commit: o.Commit, At: o.At}}, nil
	case "mr":
		switch o.Action {
		case "open", "reopen":
			return []promotion.Event{promotion.MROpened{Stage: o.Stage, IID: iid, Author: o.User, SHA: o.SHA}}, nil
		case "update":
			return []promotion.Event{promotion.MRUpdated{Stage: o.Stage, IID: iid, SHA: o.SHA}}, nil
		case "approved":
			return []promotion.Event{promotion.MRApproved{Stage: o.Stage, IID: iid, User: o.User}}, nil
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
		return []promotion.Event{promotion.Health{Stage: o.Stage, Healthy: o.Healthy, Reason: o.Reason, At: p.now()}}, nil
	case "pipeline":
		return []promotion.Event{promotion.Tick{}}, nil // a finished pipeline may make an MR mergeable
	}
	return nil, nil
}

// committedAt is when the source commit was made, for lead time; zero when
// GitLab does not say.
func (p *dispatcher) committedAt(ctx context.Context, project, sha string) time.Time {
	if project == "" || sha == "" {
		return time.Time{}
	}
	c, err := p.commits.GetCommit(ctx, project, sha)
	if err != nil {
		return time.Time{}
	}
	return c.CommittedAt
}

// changeAuthors are the authors of the source MRs that contain the commit:
// they may not approve their own change into production.
func (p *dispatcher) changeAuthors(ctx context.Context, project, sha string) []string {
	if project == "" || sha == "" {
		return nil
	}
	mrs, err := p.commits.MRsForCommit(ctx, project, sha)
	if err != nil {
		p.log.WarnContext(ctx, "source MR of a change not found", "project", project, "commit", sha, "err", err)
		return nil
	}
	var out []string
	for _, m := range mrs {
		if m.Author.Username != "" {
			out = append(out, m.Author.Username)
		}
	}
	return out
}
