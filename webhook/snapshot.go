package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/trust"
	"github.com/lotse/lotse/internal/writeback"
)

// snapshot is one immutable reading of lotsed's configuration: lotse.yaml,
// the promotion policy of every app derived from it and from lotsed's own
// settings, the gates' key material and the projects whose deliveries are
// kept. An event is processed with one snapshot from start to end; a reload
// makes a new one and swaps it in, so nothing changes under a running
// event.
type snapshot struct {
	config   *gitops.Config
	writer   releaseWriter
	policies map[string]promotion.Policy
	projects map[string]bool // lower-case project paths
	keys     gateKeys
}

// releaseWriter writes releases into the GitOps repository; a
// *writeback.Writer bound to the snapshot's lotse.yaml.
type releaseWriter interface {
	Bump(ctx context.Context, b writeback.Bump) (writeback.Result, error)
	Rollback(ctx context.Context, r writeback.Rollback) (writeback.Result, error)
	Status(ctx context.Context, app string) ([]writeback.StageStatus, error)
}

// gateKeys is what the signature and scan gates verify with.
type gateKeys struct {
	// signer is whose signature counts: a cosign public key (a file this
	// snapshot wrote, env://VAR or a KMS URI) or a keyless identity (its
	// trusted root a file this snapshot wrote). Zero: none is usable.
	signer trust.Signer
	// problem says why none is usable, for the gates' reasons.
	problem string
}

func (k gateKeys) usable() bool { return k.signer.Key != "" || k.signer.Keyless != nil }

// describe names what verified a signature, for the gates' reasons.
func (k gateKeys) describe() string {
	if kl := k.signer.Keyless; kl != nil {
		id := kl.Identity
		if id == "" {
			id = kl.AnchoredIdentityRegexp()
		}
		return "keyless, as " + id + " from " + kl.Issuer
	}
	return "with the configured key"
}

// policy returns the promotion policy of app; false when lotse.yaml does not
// define it.
func (s *snapshot) policy(app string) (promotion.Policy, bool) {
	p, ok := s.policies[app]
	return p, ok
}

// policyAt is policy with lotse.yaml's freeze windows in force at now.
func (s *snapshot) policyAt(app string, now time.Time) (promotion.Policy, bool) {
	p, ok := s.policy(app)
	if !ok {
		return p, false
	}
	p.Freezes = nil
	for _, f := range s.config.Freezes {
		if on, until := f.ActiveAt(now); on {
			from := f.From
			if f.Cron != "" {
				from = until.Add(-f.Duration)
			}
			p.Freezes = append(p.Freezes, promotion.FreezeWindow{Stages: f.Stages, Reason: f.Reason, From: from, Until: until})
		}
	}
	return p, true
}

// apps are the apps of lotse.yaml, in its order.
func (s *snapshot) apps() []string {
	out := make([]string, 0, len(s.config.Apps))
	for _, a := range s.config.Apps {
		if _, ok := s.policies[a.Name]; ok {
			out = append(out, a.Name)
		}
	}
	return out
}

// watches reports whether deliveries of project concern lotsed.
func (s *snapshot) watches(project string) bool { return s.projects[strings.ToLower(project)] }

// people are the GitLab users lotsed's settings name, resolved to IDs, and
// what lotsed read of the GitOps project's settings for its sticky comments.
type people struct {
	bot       promotion.User
	operators []promotion.User
	writers   []promotion.User
	notice    string // e.g. the lotse/* branches are not protected
}

// newSnapshot derives a snapshot from lotse.yaml and w, the writer bound to
// it, and lotsed's own settings.
func newSnapshot(cfg *gitops.Config, w releaseWriter, gitopsProject string, who people, keys gateKeys) *snapshot {
	s := &snapshot{config: cfg, writer: w, policies: map[string]promotion.Policy{}, keys: keys,
		projects: map[string]bool{strings.ToLower(gitopsProject): true}}
	for _, a := range cfg.Apps {
		s.projects[strings.ToLower(a.SourceProject)] = true
		stages, err := cfg.StagesFor(a.Name)
		if err != nil {
			continue
		}
		p := promotion.Policy{App: a.Name, Bot: who.bot, Operators: who.operators, Writers: who.writers, Notice: who.notice}
		for _, st := range stages {
			p.Stages = append(p.Stages, promotion.StagePolicy{Name: st.Name, Mode: promotion.Mode(st.Promotion), Approvals: st.Approvals,
				RequireSignature: st.Gates.Signature, MaxSeverity: st.Gates.MaxSeverity, MaxScanAge: st.Gates.MaxScanAge, Soak: st.Gates.Soak, RequireHealthy: st.Gates.Health,
				ManualSync: st.Sync == gitops.SyncManual, RequirePipeline: st.Pipeline, Tier: st.Tier, URL: st.URLFor(a.Name)})
		}
		s.policies[a.Name] = p
	}
	return s
}

// configSource holds the current snapshot and reads a new one on demand.
// Readers take the current one without locking; reloads are serialised.
type configSource struct {
	gitopsProject string
	read          func(ctx context.Context) (*snapshot, error)
	cur           atomic.Pointer[snapshot]
	mu            sync.Mutex
}

// current returns the snapshot in force, reading the first one if needed.
func (c *configSource) current(ctx context.Context) (*snapshot, error) {
	if s := c.cur.Load(); s != nil {
		return s, nil
	}
	return c.reload(ctx)
}

// reload reads lotse.yaml again and puts the new snapshot in force. On an
// error the snapshot in force stays.
func (c *configSource) reload(ctx context.Context) (*snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	c.cur.Store(s)
	return s, nil
}

// watches is the intake's filter: before any lotse.yaml was read, only the
// GitOps project's deliveries are kept (one of them may change lotse.yaml).
func (c *configSource) watches(project string) bool {
	if s := c.cur.Load(); s != nil {
		return s.watches(project)
	}
	return strings.EqualFold(project, c.gitopsProject)
}

// usersAndBranches resolves usernames and reads the GitOps project's branch
// protections.
type usersAndBranches interface {
	UserByUsername(ctx context.Context, username string) (gitlab.User, error)
	ProtectedBranches(ctx context.Context, project string) ([]gitlab.ProtectedBranch, error)
}

// snapshotReader reads lotse.yaml and the key it names from the GitOps
// project, resolves the people lotsed's settings name to GitLab user IDs,
// and makes a snapshot of them.
type snapshotReader struct {
	gl            writeback.GitLab // reads lotse.yaml and the key; the writer writes through it
	users         usersAndBranches
	gitopsProject string
	bot           promotion.User
	operators     []string // usernames, resolved at every reload
	writers       []string
	publicKey     string // lotsed's --public-key; wins over lotse.yaml's
	keyDir        string // where key files are written
}

func (r *snapshotReader) read(ctx context.Context) (*snapshot, error) {
	// lotsed merges promotion MRs itself, after it recorded them, and only
	// fresh MRs it opened itself.
	w, err := writeback.Open(ctx, r.gl, r.gitopsProject, writeback.Options{CallerMerges: true, FreshMRs: true})
	if err != nil {
		return nil, err
	}
	keys, err := r.keys(ctx, w.Config())
	if err != nil {
		return nil, err
	}
	who := people{bot: r.bot}
	if who.operators, err = r.resolve(ctx, "operators", r.operators); err != nil {
		return nil, err
	}
	if who.writers, err = r.resolve(ctx, "writers", r.writers); err != nil {
		return nil, err
	}
	if who.notice, err = r.protection(ctx); err != nil {
		return nil, err
	}
	return newSnapshot(w.Config(), w, r.gitopsProject, who, keys), nil
}

// resolve turns usernames into users: people are compared by ID, which
// stays when a username changes (and a username freed by a rename cannot
// be taken over).
func (r *snapshotReader) resolve(ctx context.Context, what string, names []string) ([]promotion.User, error) {
	var out []promotion.User
	for _, n := range names {
		u, err := r.users.UserByUsername(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("%s: GitLab user %q: %w", what, n, err)
		}
		out = append(out, promotion.User{ID: u.ID, Username: u.Username})
	}
	return out, nil
}

// protection says what is missing when the promotion branches are not
// protected so that only Maintainers (lotse's user) can push to them.
func (r *snapshotReader) protection(ctx context.Context) (string, error) {
	bs, err := r.users.ProtectedBranches(ctx, r.gitopsProject)
	if err != nil {
		return "", fmt.Errorf("protected branches of %s: %w", r.gitopsProject, err)
	}
	for _, b := range bs {
		if b.Matches("lotse/app/stage") && onlyMaintainers(b.Push) {
			return "", nil
		}
	}
	return "The `lotse/*` branches of this project are not protected: a Developer can push to them. lotse notices and closes such merge requests, " +
		"but protect them (*Settings › Repository › Protected branches*: `lotse/*`, *Allowed to push and merge: Maintainers*).", nil
}

func onlyMaintainers(as []gitlab.BranchAccess) bool {
	for _, a := range as {
		if a.UserID == 0 && a.GroupID == 0 && a.DeployKeyID == 0 && a.Level < gitlab.AccessMaintainer {
			return false
		}
	}
	return len(as) > 0
}

// keys makes lotse.yaml's signing usable by cosign: a key URI as it is, a
// key or a trusted root in the GitOps repository as a file of its own.
// Files are named after their content and never rewritten, so a
// verification still running with an older snapshot reads what it started
// with. lotsed's --public-key wins over lotse.yaml.
func (r *snapshotReader) keys(ctx context.Context, cfg *gitops.Config) (gateKeys, error) {
	switch {
	case r.publicKey != "":
		return gateKeys{signer: trust.Signer{Key: r.publicKey}}, nil
	case cfg.Signing.Keyless != nil:
		kl := *cfg.Signing.Keyless
		if kl.TrustedRoot != "" {
			p, problem, err := r.repoFile(ctx, cfg, kl.TrustedRoot, "signing.keyless.trustedRoot", "trusted_root-", ".json")
			if err != nil || problem != "" {
				return gateKeys{problem: problem}, err
			}
			kl.TrustedRoot = p
		}
		return gateKeys{signer: trust.Signer{Keyless: &kl}}, nil
	case cfg.Signing.PublicKey == "":
		return gateKeys{problem: "no public key or keyless identity configured (lotse.yaml signing, or LOTSE_PUBLIC_KEY)"}, nil
	case strings.Contains(cfg.Signing.PublicKey, "://"):
		return gateKeys{signer: trust.Signer{Key: cfg.Signing.PublicKey}}, nil
	}
	p, problem, err := r.repoFile(ctx, cfg, cfg.Signing.PublicKey, "signing.publicKey", "cosign-", ".pub")
	if err != nil || problem != "" {
		return gateKeys{problem: problem}, err
	}
	return gateKeys{signer: trust.Signer{Key: p}}, nil
}

// repoFile writes a file of the GitOps repository's default branch into
// keyDir under a name made of its content; problem says when the file is
// not there.
func (r *snapshotReader) repoFile(ctx context.Context, cfg *gitops.Config, path, what, prefix, suffix string) (local, problem string, err error) {
	f, err := r.gl.File(ctx, r.gitopsProject, path, cfg.GitLab.DefaultBranch)
	if errors.Is(err, gitlab.ErrNotFound) {
		return "", fmt.Sprintf("%s %s is not in %s", what, path, r.gitopsProject), nil
	}
	if err != nil {
		return "", "", fmt.Errorf("read %s %s: %w", what, path, err)
	}
	sum := sha256.Sum256(f.Content)
	p := filepath.Join(r.keyDir, prefix+hex.EncodeToString(sum[:12])+suffix)
	if _, err := os.Stat(p); err == nil {
		return p, "", nil
	}
	if err := atomicfile.Write(p, f.Content); err != nil {
		return "", "", fmt.Errorf("write %s: %w", what, err)
	}
	return p, "", nil
}
