package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/writeback"
)

// gatherWait is how long an idle worker waits after a new delivery before it
// leases: deliveries arriving meanwhile share its transactions.
const gatherWait = 20 * time.Millisecond

// leaseBatch is how many deliveries a worker takes at once: completing them
// together costs one disk flush instead of one each.
const leaseBatch = 32

// storePoll is how often a worker looks in the store at the latest, for
// retries that came due and leases that ran out.
const storePoll = 500 * time.Millisecond

// leaseTTL is how long a worker owns a delivery before another may take it.
const leaseTTL = 30 * time.Second

// service is lotsed's worker side: it turns stored deliveries into
// promotion events, runs the state machine and carries out its actions.
type service struct {
	cfg    *Config
	log    *slog.Logger
	db     *store.DB
	gl     *gitlab.Client
	server *Server
	gates  *gates
	bot    string
	owner  string
	now    func() time.Time
	tmpDir string

	lastPrune time.Time // only the timer goroutine touches it

	writer  atomic.Pointer[writeback.Writer]
	loadMu  sync.Mutex
	appMu   sync.Mutex
	appLock map[string]*sync.Mutex
}

func newService(ctx context.Context, cfg *Config, version string, log *slog.Logger) (*service, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	gl, err := gitlab.New(cfg.GitLabURL, cfg.GitLabToken, gitlab.WithUserAgent("lotsed/"+version))
	if err != nil {
		db.Close()
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "lotsed")
	if err != nil {
		db.Close()
		return nil, err
	}
	host, _ := os.Hostname()
	s := &service{cfg: cfg, log: log, db: db, gl: gl, now: time.Now, tmpDir: tmp, appLock: map[string]*sync.Mutex{},
		owner: fmt.Sprintf("%s-%d-%d", host, os.Getpid(), rand.Int64())}
	if db.SingleProcess() {
		// Leases left in a database no other process uses are those of a
		// lotsed that died: their deliveries need not wait for them to
		// expire.
		n, err := db.ReleaseLeases(ctx, s.now())
		if err != nil {
			s.close()
			return nil, err
		}
		if n > 0 {
			log.Info("deliveries of an earlier run queued again", "count", n)
		}
	}
	s.server, err = NewServer(cfg, db, s, log, time.Now)
	if err != nil {
		s.close()
		return nil, err
	}
	s.server.HandOff(s.handoffOwner(), leaseTTL, cfg.Workers*leaseBatch)
	s.bot = cfg.BotUser
	if s.bot == "" {
		u, err := gl.CurrentUser(ctx)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("who is lotse's GitLab user (LOTSE_GITLAB_TOKEN)? %w", err)
		}
		s.bot = u.Username
	}
	s.gates = &gates{key: cfg.PublicKey, insecure: cfg.Insecure, offline: cfg.SignOffline,
		user: cfg.RegistryUser, password: cfg.RegistryPassword}
	s.server.SetProjects([]string{cfg.GitOpsProject})
	if _, err := s.config(ctx); err != nil {
		// lotsed still starts: the config is read again on the next delivery.
		log.Warn("lotse.yaml not readable yet", "project", cfg.GitOpsProject, "err", err)
	}
	return s, nil
}

func (s *service) close() {
	// What this process leased and did not finish (handed over but not
	// taken, or interrupted) is free for the other replicas at once.
	owners := []string{s.handoffOwner()}
	for i := range s.cfg.Workers {
		owners = append(owners, s.workerOwner(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := s.db.ReleaseLeases(ctx, s.now(), owners...); err != nil {
		s.log.Warn("release leases", "err", err)
	}
	cancel()
	s.db.Close()
	os.RemoveAll(s.tmpDir)
}

// config returns the writer over lotse.yaml, reading it when needed.
func (s *service) config(ctx context.Context) (*writeback.Writer, error) {
	if w := s.writer.Load(); w != nil {
		return w, nil
	}
	return s.reload(ctx)
}

// reload reads lotse.yaml again (after a push that changed it).
func (s *service) reload(ctx context.Context) (*writeback.Writer, error) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	// lotsed merges promotion MRs itself, after it recorded them.
	w, err := writeback.Open(ctx, s.gl, s.cfg.GitOpsProject, writeback.Options{CallerMerges: true})
	if err != nil {
		return nil, err
	}
	cfg := w.Config()
	projects := []string{s.cfg.GitOpsProject}
	for _, a := range cfg.Apps {
		projects = append(projects, a.SourceProject)
	}
	s.server.SetProjects(projects)
	if s.cfg.PublicKey == "" && cfg.Signing.PublicKey != "" {
		s.gates.key = s.fetchKey(ctx, cfg.Signing.PublicKey, cfg.GitLab.DefaultBranch)
	}
	s.writer.Store(w)
	return w, nil
}

// fetchKey makes lotse.yaml's signing.publicKey usable by cosign: a KMS URI
// as it is, a path in the GitOps repository as a local file.
func (s *service) fetchKey(ctx context.Context, ref, branch string) string {
	if strings.Contains(ref, "://") {
		return ref
	}
	f, err := s.gl.File(ctx, s.cfg.GitOpsProject, ref, branch)
	if err != nil {
		s.log.Warn("signing.publicKey not readable", "path", ref, "err", err)
		return ""
	}
	p := filepath.Join(s.tmpDir, "cosign.pub")
	if err := os.WriteFile(p, f.Content, 0o600); err != nil {
		s.log.Warn("signing.publicKey not writable", "err", err)
		return ""
	}
	return p
}

// policy maps lotse.yaml onto the state machine's policy for app.
func (s *service) policy(cfg *gitops.Config, app string) (promotion.Policy, bool) {
	stages, err := cfg.StagesFor(app)
	if err != nil {
		return promotion.Policy{}, false
	}
	p := promotion.Policy{App: app, BotUser: s.bot, Operators: s.cfg.Operators}
	for _, st := range stages {
		p.Stages = append(p.Stages, promotion.StagePolicy{Name: st.Name, Mode: promotion.Mode(st.Promotion), Approvals: st.Approvals,
			RequireSignature: st.Gates.Signature, MaxSeverity: st.Gates.MaxSeverity, Soak: st.Gates.Soak, RequireHealthy: st.Gates.Health})
	}
	return p, true
}

// work runs the workers and the timer until ctx is done.
func (s *service) work(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.workerLoop(ctx, i)
		}()
	}
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			s.tick(ctx)
		}
	}
}

func (s *service) workerLoop(ctx context.Context, n int) {
	owner := s.workerOwner(n)
	idle := time.NewTimer(0)
	defer idle.Stop()
	// fromStore: the store may hold deliveries for us (queued, due for a
	// retry, or leases expired): at start, when woken, at least every
	// storePoll (a busy hand-off must not starve them), and while leases
	// come back full.
	fromStore := true
	var looked time.Time
	for ctx.Err() == nil {
		select {
		case <-s.server.Kicks():
			fromStore = true
		default:
		}
		if fromStore || s.now().Sub(looked) >= storePoll {
			looked = s.now()
			ds, err := s.db.Lease(ctx, owner, leaseBatch, leaseTTL, looked)
			if err != nil && ctx.Err() == nil {
				s.log.Error("lease deliveries", "err", err)
			}
			fromStore = len(ds) == leaseBatch
			if len(ds) > 0 {
				hs := make([]handed, len(ds))
				for i, d := range ds {
					hs[i].d = d
				}
				s.run(ctx, owner, hs)
				continue
			}
		}
		if hs := s.handed(nil); len(hs) > 0 {
			s.run(ctx, s.handoffOwner(), hs)
			continue
		}
		idle.Reset(storePoll)
		select {
		case <-ctx.Done():
			return
		case h := <-s.server.Handed():
			s.run(ctx, s.handoffOwner(), s.handed(&h))
		case <-s.server.Kicks():
			// Let a few more queued deliveries arrive, so that one lease
			// serves them all.
			select {
			case <-ctx.Done():
				return
			case <-time.After(gatherWait):
			}
			fromStore = true
		case <-idle.C:
			fromStore = true
		}
	}
}

// workerOwner is who worker n leases deliveries from the store to.
func (s *service) workerOwner(n int) string { return fmt.Sprintf("%s/%d", s.owner, n) }

// handoffOwner is who the intake leases the deliveries it hands over to.
func (s *service) handoffOwner() string { return s.owner + "/intake" }

// handed takes first (when not nil) and what else the intake has handed
// over, up to a batch, leaving out deliveries whose lease ran out while
// they waited (a worker may have leased them from the store since).
func (s *service) handed(first *handed) []handed {
	var hs []handed
	now := s.now()
	take := func(h handed) {
		s.server.Took()
		if now.Before(h.d.LeaseUntil) {
			hs = append(hs, h)
		}
	}
	if first != nil {
		take(*first)
	}
	for len(hs) < leaseBatch {
		select {
		case h := <-s.server.Handed():
			take(h)
		default:
			return hs
		}
	}
	return hs
}

// run processes hs, leased to owner, and marks those done that are.
func (s *service) run(ctx context.Context, owner string, hs []handed) {
	var done []int64
	for _, h := range hs {
		if s.handle(ctx, owner, h) {
			done = append(done, h.d.ID)
		}
	}
	// One write for the batch, committed with the intake's deliveries.
	if n, err := s.db.CompleteMany(ctx, done, owner); err != nil && ctx.Err() == nil {
		s.log.Warn("complete deliveries", "ids", done, "err", err)
	} else if n < len(done) {
		s.log.Warn("deliveries completed after their lease was lost", "lost", len(done)-n)
	}
}

// handle processes one delivery; true means it is done (the caller marks
// it), false that the failure was recorded for a retry or parked as dead.
func (s *service) handle(ctx context.Context, owner string, h handed) bool {
	d := h.d
	err := s.process(ctx, d, h.hook)
	if ctx.Err() != nil {
		return false // shutting down: the lease expires and another worker retries
	}
	m := s.server.metrics
	if err == nil {
		m.processed.Add(1)
		return true
	}
	max := s.cfg.MaxAttempts
	var de *decodeError
	if errors.As(err, &de) {
		max = d.Attempts // retrying cannot help: park it now
	}
	backoff := time.Duration(1<<min(d.Attempts, 8)) * time.Second
	dead, ferr := s.db.Fail(ctx, d.ID, owner, err.Error(), s.now().Add(backoff), max)
	if ferr != nil {
		s.log.Warn("record failure", "id", d.ID, "err", ferr)
	}
	if dead {
		m.dead.Add(1)
		s.log.Error("delivery parked as dead", "id", d.ID, "event", d.Event, "attempts", d.Attempts, "err", err)
		return false
	}
	m.failed.Add(1)
	s.log.Warn("delivery failed, will retry", "id", d.ID, "event", d.Event, "attempt", d.Attempts, "err", err)
	return false
}

// process decodes a delivery and applies what it says to each app.
// hook is d's body decoded when the intake handed it over; nil otherwise.
func (s *service) process(ctx context.Context, d store.Delivery, hook *gitlabHook) error {
	w, err := s.config(ctx)
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
				return &decodeError{err}
			}
		}
		if d.Event == "Push Hook" && touchesConfig(hook) {
			if w, err = s.reload(ctx); err != nil {
				return fmt.Errorf("reload lotse.yaml: %w", err)
			}
		}
		occ, err = decodeHook(d.Event, hook, s.cfg.GitOpsProject, w.Config().GitLab.DefaultBranch, s.bot)
	case "argocd":
		occ, err = decodeArgoCD(d.Body)
	default:
		return &decodeError{fmt.Errorf("unknown source %q", d.Source)}
	}
	if err != nil {
		return err
	}
	for _, o := range occ {
		p, ok := s.policy(w.Config(), o.App)
		if !ok {
			s.log.Info("delivery for an app lotse.yaml does not define", "app", o.App, "id", d.ID)
			continue
		}
		ev, err := s.events(ctx, o)
		if err != nil {
			return err
		}
		if err := s.apply(ctx, p, ev); err != nil {
			return fmt.Errorf("app %s: %w", o.App, err)
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

// events turns an occurrence into state machine events.
func (s *service) events(ctx context.Context, o occurrence) ([]promotion.Event, error) {
	iid := int(o.IID)
	switch o.Kind {
	case "landed":
		l := store.Landing{App: o.App, Stage: o.Stage, Image: o.Image, SourceCommit: o.SourceCommit, LandedAt: o.At,
			CommittedAt: s.committedAt(ctx, o.SourceProject, o.SourceCommit), Rollback: o.Rollback}
		if _, err := s.db.RecordLanding(ctx, l); err != nil {
			return nil, err
		}
		return []promotion.Event{promotion.Landed{Stage: o.Stage, Image: o.Image, SourceProject: o.SourceProject,
			SourceCommit: o.SourceCommit, ChangeAuthors: s.changeAuthors(ctx, o.SourceProject, o.SourceCommit), Commit: o.Commit, At: o.At}}, nil
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
		return []promotion.Event{promotion.Health{Stage: o.Stage, Healthy: o.Healthy, Reason: o.Reason, At: s.now()}}, nil
	case "pipeline":
		return []promotion.Event{promotion.Tick{}}, nil // a finished pipeline may make an MR mergeable
	}
	return nil, nil
}

// committedAt is when the source commit was made, for lead time; zero when
// GitLab does not say.
func (s *service) committedAt(ctx context.Context, project, sha string) time.Time {
	if project == "" || sha == "" {
		return time.Time{}
	}
	c, err := s.gl.GetCommit(ctx, project, sha)
	if err != nil {
		return time.Time{}
	}
	return c.CommittedAt
}

// changeAuthors are the authors of the source MRs that contain the commit:
// they may not approve their own change into production.
func (s *service) changeAuthors(ctx context.Context, project, sha string) []string {
	if project == "" || sha == "" {
		return nil
	}
	mrs, err := s.gl.MRsForCommit(ctx, project, sha)
	if err != nil {
		s.log.Warn("source MR of a change not found", "project", project, "commit", sha, "err", err)
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

// tick sends the passage of time to every app.
func (s *service) tick(ctx context.Context) {
	s.prune(ctx)
	w, err := s.config(ctx)
	if err != nil {
		return
	}
	for _, a := range w.Config().Apps {
		p, ok := s.policy(w.Config(), a.Name)
		if !ok {
			continue
		}
		if err := s.apply(ctx, p, []promotion.Event{promotion.Tick{}}); err != nil && ctx.Err() == nil {
			s.log.Warn("timer", "app", a.Name, "err", err)
		}
	}
}

// prune deletes the deliveries processed longer ago than the retention,
// at most once an hour.
func (s *service) prune(ctx context.Context) {
	now := s.now()
	if s.cfg.Retention <= 0 || now.Sub(s.lastPrune) < time.Hour {
		return
	}
	s.lastPrune = now
	n, err := s.db.Prune(ctx, now.Add(-s.cfg.Retention))
	if err != nil {
		s.log.Warn("prune deliveries", "err", err)
		return
	}
	if n > 0 {
		s.log.Info("pruned processed deliveries", "count", n, "older_than", s.cfg.Retention.String())
	}
}

// record is what is stored per app: the state machine's state and the
// actions it asked for that are not done yet (an outbox, so a crash between
// saving the state and acting only repeats an action, never loses one).
type record struct {
	State  promotion.State `json:"state"`
	Outbox []envelope      `json:"outbox,omitempty"`
}

func (s *service) lock(app string) func() {
	s.appMu.Lock()
	m := s.appLock[app]
	if m == nil {
		m = &sync.Mutex{}
		s.appLock[app] = m
	}
	s.appMu.Unlock()
	m.Lock()
	return m.Unlock
}

func (s *service) load(ctx context.Context, app string) (record, int64, error) {
	data, ver, err := s.db.LoadState(ctx, app)
	if err != nil {
		return record{}, 0, err
	}
	var r record
	if len(data) > 0 {
		if err := json.Unmarshal(data, &r); err != nil {
			return record{}, 0, fmt.Errorf("stored state of %s: %w", app, err)
		}
	}
	return r, ver, nil
}

func (s *service) save(ctx context.Context, app string, r record, ver int64) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.SaveState(ctx, app, data, ver)
}

// apply runs events through the state machine and then carries out the
// outbox, feeding what the actions report back in.
func (s *service) apply(ctx context.Context, p promotion.Policy, events []promotion.Event) error {
	defer s.lock(p.App)()
	if err := s.step(ctx, p, events, nil); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if i > 1000 {
			return fmt.Errorf("more than 1000 actions in a row: giving up")
		}
		r, _, err := s.load(ctx, p.App)
		if err != nil {
			return err
		}
		if len(r.Outbox) == 0 {
			return nil
		}
		head := r.Outbox[0]
		follow, err := s.perform(ctx, p.App, head.action())
		s.log.Debug("action", "app", p.App, "action", head.Type, "data", string(head.Data), "follow", len(follow), "err", err)
		if err != nil {
			return fmt.Errorf("%s: %w", head.Type, err)
		}
		if err := s.step(ctx, p, follow, &head); err != nil {
			return err
		}
	}
}

// step applies events to the stored state (and pops done, the outbox head
// just carried out), retrying when another writer got there first.
func (s *service) step(ctx context.Context, p promotion.Policy, events []promotion.Event, done *envelope) error {
	for attempt := 0; attempt < 20; attempt++ {
		r, ver, err := s.load(ctx, p.App)
		if err != nil {
			return err
		}
		if done != nil && len(r.Outbox) > 0 && r.Outbox[0].key() == done.key() {
			r.Outbox = r.Outbox[1:]
		}
		for _, e := range events {
			st, acts, err := promotion.Next(p, r.State, e, s.now())
			if err != nil {
				s.log.Warn("event refused by the state machine", "app", p.App, "event", fmt.Sprintf("%T", e), "err", err)
				continue
			}
			if _, tick := e.(promotion.Tick); !tick || len(acts) > 0 {
				s.log.Debug("event", "app", p.App, "event", fmt.Sprintf("%T", e), "detail", fmt.Sprintf("%+v", e), "actions", len(acts))
			}
			r.State = st
			for _, a := range acts {
				r.Outbox = append(r.Outbox, wrap(a))
			}
		}
		err = s.save(ctx, p.App, r, ver)
		if errors.Is(err, store.ErrStale) {
			continue
		}
		return err
	}
	return fmt.Errorf("state of %s kept changing under us", p.App)
}

// envelope is an action in JSON, tagged with its type.
type envelope struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func wrap(a promotion.Action) envelope {
	b, _ := json.Marshal(a)
	return envelope{Type: fmt.Sprintf("%T", a), Data: b}
}

func (e envelope) key() string {
	sum := sha256.Sum256(append([]byte(e.Type+"\n"), e.Data...))
	return hex.EncodeToString(sum[:])
}

func (e envelope) action() promotion.Action {
	var a promotion.Action
	switch e.Type {
	case "promotion.OpenMR":
		a = decodeAs[promotion.OpenMR](e.Data)
	case "promotion.Rollback":
		a = decodeAs[promotion.Rollback](e.Data)
	case "promotion.MergeMR":
		a = decodeAs[promotion.MergeMR](e.Data)
	case "promotion.CheckGates":
		a = decodeAs[promotion.CheckGates](e.Data)
	case "promotion.SetStatus":
		a = decodeAs[promotion.SetStatus](e.Data)
	case "promotion.UpsertComment":
		a = decodeAs[promotion.UpsertComment](e.Data)
	case "promotion.Reply":
		a = decodeAs[promotion.Reply](e.Data)
	case "promotion.Audit":
		a = decodeAs[promotion.Audit](e.Data)
	}
	return a
}

func decodeAs[T any](b []byte) T {
	var v T
	_ = json.Unmarshal(b, &v)
	return v
}
