// Package writeback writes image bumps, promotions and rollbacks into the
// GitOps repository through GitLab: a direct commit to the default branch for
// stages with promotion commit, and a commit on branch lotse/<app>/<stage>
// plus one merge request for the other stages. It also reads the repository
// back (Status) and edits a checked-out working tree (Local).
//
// Edits are optimistic: the values file is read with its last_commit_id and
// committed with it; when GitLab answers that the file changed meanwhile, the
// file is read again and the edit re-applied, with bounded, jittered
// retries. So concurrent bumps of different apps in one values file all land,
// and a bump of one app never undoes another's.
//
// The package does no logging and reads no environment: callers pass a
// GitLab client and the GitOps project and get results back.
package writeback

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
)

// ConfigFile is where lotse.yaml lives in the GitOps repository.
const ConfigFile = "lotse.yaml"

// Repository is the part of the GitLab client that reads and commits files.
type Repository interface {
	File(ctx context.Context, project, path, ref string) (gitlab.File, error)
	FileHistory(ctx context.Context, project, path, ref string, limit int) ([]gitlab.Commit, error)
	BranchHead(ctx context.Context, project, branch string) (string, error)
	Commit(ctx context.Context, project string, req gitlab.CommitRequest) (gitlab.Commit, error)
}

// MergeRequests is the part of the GitLab client that opens and merges MRs.
type MergeRequests interface {
	FindOpenMR(ctx context.Context, project, sourceBranch string) (gitlab.MR, error)
	CreateMR(ctx context.Context, project string, req gitlab.CreateMRRequest) (gitlab.MR, error)
	UpdateMR(ctx context.Context, project string, iid int64, req gitlab.UpdateMRRequest) (gitlab.MR, error)
	MergeMR(ctx context.Context, project string, iid int64, opts gitlab.MergeOptions) (gitlab.MR, error)
	GetMR(ctx context.Context, project string, iid int64) (gitlab.MR, error)
}

// GitLab is what Writer needs from GitLab; *gitlab.Client satisfies it.
type GitLab interface {
	Repository
	MergeRequests
}

// Options tune a Writer. The zero value gives the defaults.
type Options struct {
	// MaxRetries bounds how often one write re-reads and re-applies its edit
	// after a conflict. Default 60: a values file shared by 50 apps that all
	// bump at once needs up to about one retry per other app.
	MaxRetries int
	// Backoff is the base of the wait between retries (default 20ms): a
	// random wait up to the base times 2^retry, at most 32 times the base.
	Backoff time.Duration
	// HistoryLimit bounds how many commits of a values file Rollback and
	// Status read. Default 100.
	HistoryLimit int
	// AuthorName and AuthorEmail set the commit author; empty: the token's user.
	AuthorName, AuthorEmail string
	// CallerMerges leaves merging to the caller: no auto-merge is asked for
	// merge-request stages and rollbacks. lotsed sets it, because it merges
	// only after it recorded the MR and its gates.
	CallerMerges bool
	// FreshMRs never reuses an open MR of the stage branch: the branch is
	// started anew from the default branch and a new MR is opened; an open
	// MR on the branch (the caller closes them first) is an error. lotsed
	// sets it: it merges only MRs it opened itself, one per version.
	FreshMRs bool
}

// ErrBranchTaken is returned with FreshMRs when the stage branch has an
// open merge request: someone opened one since the caller closed them.
var ErrBranchTaken = errors.New("the promotion branch has an open merge request")

func (o Options) withDefaults() Options {
	if o.MaxRetries <= 0 {
		o.MaxRetries = 60
	}
	if o.Backoff <= 0 {
		o.Backoff = 20 * time.Millisecond
	}
	if o.HistoryLimit <= 0 {
		o.HistoryLimit = 100
	}
	return o
}

// Writer writes into one GitOps project. It is safe for concurrent use.
type Writer struct {
	gl      GitLab
	project string
	cfg     *gitops.Config
	opts    Options
}

// Open reads and validates lotse.yaml at the root of project's default
// branch (ref HEAD) and returns a Writer for it.
func Open(ctx context.Context, gl GitLab, project string, opts Options) (*Writer, error) {
	if project == "" {
		return nil, errors.New("no GitOps project given")
	}
	f, err := gl.File(ctx, project, ConfigFile, "HEAD")
	if err != nil {
		if errors.Is(err, gitlab.ErrNotFound) {
			return nil, fmt.Errorf("read %s of %s: no such file on the default branch (or no access to the project): %w", ConfigFile, project, err)
		}
		return nil, fmt.Errorf("read %s of %s: %w", ConfigFile, project, err)
	}
	cfg, err := gitops.ParseConfig(f.Content, project+":"+ConfigFile)
	if err != nil {
		return nil, err
	}
	if err := belongsTo(cfg, project); err != nil {
		return nil, err
	}
	return &Writer{gl: gl, project: project, cfg: cfg, opts: opts.withDefaults()}, nil
}

// belongsTo checks that lotse.yaml names the project it was read from: a
// lotse.yaml copied from another GitOps repository (or a project path
// mistyped in CI) would otherwise write one team's releases into another
// team's repository. A numeric project ID cannot be compared and passes.
func belongsTo(cfg *gitops.Config, project string) error {
	if strings.Trim(project, "0123456789") == "" || strings.EqualFold(cfg.GitLab.Project, project) {
		return nil
	}
	return fmt.Errorf("%s of %s says gitlab.project %q: it belongs to another GitOps project (fix gitlab.project, or the project lotse was given)",
		ConfigFile, project, cfg.GitLab.Project)
}

// Config returns the parsed lotse.yaml.
func (w *Writer) Config() *gitops.Config { return w.cfg }

// NameError is an app or stage that lotse.yaml does not define, or a stage
// an app does not go through: bad input, not a failure of GitLab.
type NameError struct{ Err error }

func (e *NameError) Error() string { return e.Err.Error() }
func (e *NameError) Unwrap() error { return e.Err }

// lookup returns the app and the stage, checking that the app goes through it.
func lookup(cfg *gitops.Config, app, stage string) (*gitops.App, *gitops.Stage, error) {
	a, err := cfg.App(app)
	if err != nil {
		return nil, nil, &NameError{err}
	}
	s, err := cfg.Stage(stage)
	if err != nil {
		return nil, nil, &NameError{err}
	}
	if _, _, err := cfg.PrevStage(app, stage); err != nil {
		return nil, nil, &NameError{err}
	}
	return a, s, nil
}

// sleep waits the jittered backoff of retry n (0-based), or until ctx ends.
func (w *Writer) sleep(ctx context.Context, n int) error {
	ceil := w.opts.Backoff << min(n, 5)
	d := rand.N(ceil + 1) // #nosec G404 -- full jitter, not security
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
