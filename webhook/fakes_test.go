package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/trust"
	"github.com/lotse/lotse/internal/writeback"
)

// In-memory fakes of everything the runner and the effects touch: the
// state store, the claims and the audit log of the store, GitLab, the
// GitOps writer and the signature verifier. They keep state like the real
// ones and can be told to fail.

// memStates is a stateStore with optimistic locking.
type memStates struct {
	mu   sync.Mutex
	data map[string][]byte
	ver  map[string]int64
}

func newMemStates() *memStates { return &memStates{data: map[string][]byte{}, ver: map[string]int64{}} }

func (m *memStates) LoadState(_ context.Context, app string) ([]byte, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.data[app]), m.ver[app], nil
}

func (m *memStates) SaveState(_ context.Context, app string, data []byte, version int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ver[app] != version {
		return store.ErrStale
	}
	m.data[app], m.ver[app] = slices.Clone(data), version+1
	return nil
}

// memRecords is the store's claims and audit log.
type memRecords struct {
	mu     sync.Mutex
	claims map[string]bool
	audit  []store.AuditRecord
	deps   []store.Deployment
}

func newMemRecords() *memRecords { return &memRecords{claims: map[string]bool{}} }

func (m *memRecords) Once(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claims[key] {
		return false, nil
	}
	m.claims[key] = true
	return true, nil
}

func (m *memRecords) Forget(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.claims, key)
	return nil
}

func (m *memRecords) Audit(_ context.Context, r store.AuditRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.audit = append(m.audit, r)
	return nil
}

func (m *memRecords) kinds(app string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.audit {
		if r.App == app {
			out = append(out, r.Kind)
		}
	}
	return out
}

var errGitLabDown = fmt.Errorf("fake GitLab: %w", gitlab.ErrUnavailable)

// fakeGitLab keeps MRs, notes and commit statuses of a GitOps project and
// its source projects. fail makes the next calls of an operation fail.
type fakeGitLab struct {
	mu       sync.Mutex
	bot      gitlab.User
	mrs      map[int64]*gitlab.MR
	commits  map[int64][]gitlab.Commit // MR commits
	diffs    map[int64][]gitlab.Diff
	files    map[string]string // path@ref → content
	messages map[string]string // commit SHA → message
	// pipelines of a commit; a commit without an entry had one green push
	// pipeline
	pipelines map[string][]gitlab.Pipeline
	emails    map[string]gitlab.User
	approved  map[int64][]gitlab.User
	notes     map[string][]gitlab.Note // project!iid
	statuses  map[string]gitlab.Status // project@sha/name
	calls     map[string]int
	fail      map[string]int // operation → failures left
	nextID    int64
	// deployments (deployfakes_test.go)
	deployments map[string][]gitlab.Deployment // project → deployments, oldest first
	envs        map[string]gitlab.Environment  // project/name
	branches    []string                       // branches of the source projects besides main
	gone        map[string]bool                // projects that do not exist
	lost        map[string]int                 // operation → calls that happen but whose answer is lost
}

func newFakeGitLab() *fakeGitLab {
	return &fakeGitLab{bot: gitlab.User{ID: 1, Username: "lotse-bot"}, mrs: map[int64]*gitlab.MR{}, approved: map[int64][]gitlab.User{},
		commits: map[int64][]gitlab.Commit{}, diffs: map[int64][]gitlab.Diff{}, files: map[string]string{}, emails: map[string]gitlab.User{}, messages: map[string]string{}, pipelines: map[string][]gitlab.Pipeline{},
		notes: map[string][]gitlab.Note{}, statuses: map[string]gitlab.Status{}, calls: map[string]int{}, fail: map[string]int{},
		gone: map[string]bool{}, lost: map[string]int{}}
}

// call counts op and fails it when told to.
func (f *fakeGitLab) call(op string) error {
	f.calls[op]++
	if f.fail[op] > 0 {
		f.fail[op]--
		return fmt.Errorf("%s: %w", op, errGitLabDown)
	}
	return nil
}

func (f *fakeGitLab) failNext(op string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = n
}

func (f *fakeGitLab) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeGitLab) GetMR(_ context.Context, _ string, iid int64) (gitlab.MR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("get-mr"); err != nil {
		return gitlab.MR{}, err
	}
	mr, ok := f.mrs[iid]
	if !ok {
		return gitlab.MR{}, gitlab.ErrNotFound
	}
	return *mr, nil
}

func (f *fakeGitLab) MergeMR(_ context.Context, _ string, iid int64, opts gitlab.MergeOptions) (gitlab.MR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("merge"); err != nil {
		return gitlab.MR{}, err
	}
	mr, ok := f.mrs[iid]
	switch {
	case !ok:
		return gitlab.MR{}, gitlab.ErrNotFound
	case mr.State != "opened":
		return gitlab.MR{}, &gitlab.APIError{Op: "merge", StatusCode: 405, Message: "405 Method Not Allowed", DetailedMergeStatus: "not_open"}
	case opts.SHA != "" && opts.SHA != mr.SHA:
		return gitlab.MR{}, fmt.Errorf("merge: %w", gitlab.ErrConflict)
	}
	mr.State = "merged"
	return *mr, nil
}

func (f *fakeGitLab) OpenMRs(_ context.Context, _ string, branch string) ([]gitlab.MR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("open-mrs"); err != nil {
		return nil, err
	}
	var out []gitlab.MR
	for _, mr := range f.mrs {
		if mr.SourceBranch == branch && mr.State == "opened" {
			out = append(out, *mr)
		}
	}
	slices.SortFunc(out, func(a, b gitlab.MR) int { return int(a.IID - b.IID) })
	return out, nil
}

func (f *fakeGitLab) UpdateMR(_ context.Context, _ string, iid int64, req gitlab.UpdateMRRequest) (gitlab.MR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("update-mr"); err != nil {
		return gitlab.MR{}, err
	}
	mr, ok := f.mrs[iid]
	if !ok {
		return gitlab.MR{}, gitlab.ErrNotFound
	}
	if req.StateEvent == "close" {
		mr.State = "closed"
	}
	return *mr, nil
}

func (f *fakeGitLab) MRCommits(_ context.Context, _ string, iid int64) ([]gitlab.Commit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("mr-commits"); err != nil {
		return nil, err
	}
	return slices.Clone(f.commits[iid]), nil
}

func (f *fakeGitLab) MRDiffs(_ context.Context, _ string, iid int64) ([]gitlab.Diff, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("mr-diffs"); err != nil {
		return nil, err
	}
	return slices.Clone(f.diffs[iid]), nil
}

func (f *fakeGitLab) UsersByEmail(_ context.Context, email string) ([]gitlab.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("users"); err != nil {
		return nil, err
	}
	if u, ok := f.emails[email]; ok {
		return []gitlab.User{u}, nil
	}
	return nil, nil
}

func (f *fakeGitLab) File(_ context.Context, _ string, path, ref string) (gitlab.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("file"); err != nil {
		return gitlab.File{}, err
	}
	c, ok := f.files[path+"@"+ref]
	if !ok {
		return gitlab.File{}, gitlab.ErrNotFound
	}
	return gitlab.File{Content: []byte(c)}, nil
}

func (f *fakeGitLab) Pipelines(_ context.Context, _ string, sha string) ([]gitlab.Pipeline, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("pipelines"); err != nil {
		return nil, err
	}
	ps, ok := f.pipelines[sha]
	if !ok {
		return []gitlab.Pipeline{{ID: 1, SHA: sha, Status: "success", Source: "push"}}, nil
	}
	return slices.Clone(ps), nil
}

func (f *fakeGitLab) Approvals(_ context.Context, _ string, iid int64) ([]gitlab.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("approvals"); err != nil {
		return nil, err
	}
	return slices.Clone(f.approved[iid]), nil
}

func (f *fakeGitLab) Notes(_ context.Context, project string, iid int64) ([]gitlab.Note, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("notes"); err != nil {
		return nil, err
	}
	return slices.Clone(f.notes[fmt.Sprintf("%s!%d", project, iid)]), nil
}

func (f *fakeGitLab) CreateNote(_ context.Context, project string, iid int64, body string) (gitlab.Note, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("create-note"); err != nil {
		return gitlab.Note{}, err
	}
	f.nextID++
	n := gitlab.Note{ID: f.nextID, Body: body, Author: f.bot}
	k := fmt.Sprintf("%s!%d", project, iid)
	f.notes[k] = append(f.notes[k], n)
	return n, nil
}

func (f *fakeGitLab) UpdateNote(_ context.Context, project string, iid, noteID int64, body string) (gitlab.Note, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("update-note"); err != nil {
		return gitlab.Note{}, err
	}
	ns := f.notes[fmt.Sprintf("%s!%d", project, iid)]
	for i := range ns {
		if ns[i].ID == noteID {
			ns[i].Body = body
			return ns[i], nil
		}
	}
	return gitlab.Note{}, gitlab.ErrNotFound
}

func (f *fakeGitLab) SetCommitStatus(_ context.Context, project, sha string, st gitlab.Status) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("status"); err != nil {
		return err
	}
	k := project + "@" + sha + "/" + st.Name
	if f.statuses[k].State == st.State {
		return fmt.Errorf("status: %w", gitlab.ErrSameStatus)
	}
	f.statuses[k] = st
	return nil
}

func (f *fakeGitLab) status(project, sha, name string) gitlab.StatusState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statuses[project+"@"+sha+"/"+name].State
}

// MRsForCommit: every source commit came through the app's MR !7 by
// dev-dora (user 30), with a commit by her and one by dev-carl.
func (f *fakeGitLab) MRsForCommit(_ context.Context, project, sha string) ([]gitlab.MR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("commit-mrs"); err != nil {
		return nil, err
	}
	return []gitlab.MR{{IID: 7, Author: gitlab.User{ID: 30, Username: "dev-dora"}, State: "merged", SourceBranch: "feature-shop",
		MergedAt: sourceMergedAt, SourceProjectID: 5, TargetProjectID: 5}}, nil
}

// sourceMergedAt is when the fake's source MR !7 was merged.
var sourceMergedAt = time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)

func (f *fakeGitLab) GetCommit(_ context.Context, project, sha string) (gitlab.Commit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("commit"); err != nil {
		return gitlab.Commit{}, err
	}
	return gitlab.Commit{SHA: sha, Message: f.messages[sha], CommittedAt: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}, nil
}

// openMR is what the writer does for an MR stage with FreshMRs: a new MR
// of the bot on the stage's branch with one commit changing the values
// file; an open MR on the branch is an error.
func (f *fakeGitLab) openMR(app, stage, image string) (*gitlab.MR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	branch := "lotse/" + app + "/" + stage
	for _, mr := range f.mrs {
		if mr.SourceBranch == branch && mr.State == "opened" {
			return nil, writeback.ErrBranchTaken
		}
	}
	f.nextID++
	sha := fmt.Sprintf("sha-%d-%s", f.nextID, image[len(image)-6:])
	mr := &gitlab.MR{IID: f.nextID, State: "opened", SourceBranch: branch, TargetBranch: "main", Author: f.bot, SHA: sha}
	f.mrs[mr.IID] = mr
	f.commits[mr.IID] = []gitlab.Commit{{SHA: sha, AuthorName: "lotse", AuthorEmail: "lotse@example.com"}}
	f.messages[sha] = gitops.CommitMessage("Promote "+app+" to "+stage, "", gitops.Trailers{App: app, Stage: stage, Image: image})
	f.diffs[mr.IID] = []gitlab.Diff{{OldPath: "apps/" + app + "/envs/" + stage + "/values.yaml", NewPath: "apps/" + app + "/envs/" + stage + "/values.yaml"}}
	return mr, nil
}

// openForeignMR is a Developer's MR on a branch.
func (f *fakeGitLab) openForeignMR(branch string, author gitlab.User) *gitlab.MR {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	mr := &gitlab.MR{IID: f.nextID, State: "opened", SourceBranch: branch, TargetBranch: "main", Author: author, SHA: "dev-sha"}
	f.mrs[mr.IID] = mr
	return mr
}

// push is a Developer pushing a commit onto an MR's branch.
func (f *fakeGitLab) push(iid int64, c gitlab.Commit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mrs[iid].SHA = c.SHA
	f.commits[iid] = append(f.commits[iid], c)
}

// fakeWriter is the GitOps writer: commit stages get a commit, the others
// an MR in the fake GitLab.
type fakeWriter struct {
	gl    *fakeGitLab
	cfg   *gitops.Config
	mu    sync.Mutex
	bumps []writeback.Bump
}

func (w *fakeWriter) Bump(_ context.Context, b writeback.Bump) (writeback.Result, error) {
	w.mu.Lock()
	w.bumps = append(w.bumps, b)
	w.mu.Unlock()
	st, err := w.cfg.Stage(b.Stage)
	if err != nil {
		return writeback.Result{}, err
	}
	res := writeback.Result{App: b.App, Stage: b.Stage, Image: b.Image}
	if st.Promotion != gitops.PromotionCommit {
		mr, err := w.gl.openMR(b.App, b.Stage, b.Image.String())
		if err != nil {
			return res, err
		}
		res.MR, res.MRCreated, res.Commit = mr, true, mr.SHA
	}
	return res, nil
}

func (w *fakeWriter) Rollback(_ context.Context, r writeback.Rollback) (writeback.Result, error) {
	mr, err := w.gl.openMR(r.App, r.Stage, r.To)
	if err != nil {
		return writeback.Result{}, err
	}
	return writeback.Result{App: r.App, Stage: r.Stage, MR: mr, MRCreated: true, Commit: mr.SHA}, nil
}

func (w *fakeWriter) Status(context.Context, string) ([]writeback.StageStatus, error) {
	return nil, nil
}

// fakeVerifier verifies what it was told is signed, and returns the vuln
// attestation it was given; it records the keys it was asked with.
type fakeVerifier struct {
	mu     sync.Mutex
	signed map[string]bool
	vulns  map[string][]string // image → severities in the attested report
	keys   []string
	hold   chan struct{} // when set, verifications wait for it
}

func (v *fakeVerifier) VerifySignature(ctx context.Context, image string, signer trust.Signer) error {
	key := signer.Key
	v.wait(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.keys = append(v.keys, key)
	if !v.signed[image] {
		return errors.New("no matching signatures")
	}
	return nil
}

func (v *fakeVerifier) VerifyAttestation(ctx context.Context, image string, signer trust.Signer, typ string) ([]byte, error) {
	key := signer.Key
	v.wait(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.keys = append(v.keys, key)
	sevs, ok := v.vulns[image]
	if !ok || typ != "vuln" {
		return nil, errors.New("no matching attestations")
	}
	return vulnAttestation(sevs), nil
}

func (v *fakeVerifier) wait(ctx context.Context) {
	if v.hold == nil {
		return
	}
	select {
	case <-v.hold:
	case <-ctx.Done():
	}
}

// vulnAttestation is cosign's verify-attestation output for a trivy report
// with findings of the given severities.
func vulnAttestation(sevs []string) []byte {
	var vs []string
	for _, s := range sevs {
		vs = append(vs, `{"Severity":"`+s+`"}`)
	}
	stmt := `{"predicateType":"https://cosign.sigstore.dev/attestation/vuln/v1","predicate":{"scanner":{"result":{"Results":[{"Vulnerabilities":[` +
		strings.Join(vs, ",") + `]}]}}}}`
	return []byte(`{"payload":"` + b64(stmt) + `"}` + "\n")
}

// testWorld is a runner wired to the fakes, with one app (shop: dev →
// staging → production) and a settable clock.
type testWorld struct {
	t        *testing.T
	states   *memStates
	records  *memRecords
	gl       *fakeGitLab
	verifier *fakeVerifier
	writer   *fakeWriter
	snap     *snapshot
	runner   *runner
	now      time.Time
}

const worldYAML = `version: 1
gitlab: {project: platform/gitops}
signing: {publicKey: keys/cosign.pub}
apps:
  - name: shop
    sourceProject: team/shop
    image: harbor.example.com/team/shop
    values: apps/{app}/envs/{stage}/values.yaml
    set: {image: reference}
stages:
  - {name: dev, promotion: commit}
  - {name: staging, promotion: merge-request, gates: {signature: true, maxSeverity: high}}
  - {name: production, promotion: approval, approvals: 2, gates: {signature: true, maxSeverity: medium}}
`

func newTestWorld(t *testing.T) *testWorld {
	t.Helper()
	cfg, err := gitops.ParseConfig([]byte(worldYAML), "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := &testWorld{t: t, states: newMemStates(), records: newMemRecords(), gl: newFakeGitLab(),
		verifier: &fakeVerifier{signed: map[string]bool{}, vulns: map[string][]string{}},
		now:      time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	w.writer = &fakeWriter{gl: w.gl, cfg: cfg}
	w.snap = snapshotOf(cfg, w.writer, gateKeys{signer: trust.Signer{Key: "/keys/k1.pub"}})
	eff := &effects{project: "platform/gitops", bot: testBot, mrs: w.gl, contents: w.gl, authors: &authorsReader{gl: w.gl}, notes: w.gl,
		statuses: w.gl, sources: w.gl, claims: w.records, audit: w.records, gates: &gates{verifier: w.verifier}, metrics: newMetrics(),
		log: slog.New(slog.DiscardHandler), deploys: w.gl, deployLog: w.records}
	w.runner = &runner{states: w.states, effects: eff, now: func() time.Time { return w.now }, log: slog.New(slog.DiscardHandler)}
	return w
}

// snapshotOf is the snapshot of lotse.yaml cfg, written through w.
func snapshotOf(cfg *gitops.Config, w releaseWriter, keys gateKeys) *snapshot {
	return newSnapshot(cfg, w, "platform/gitops", people{bot: testBot, operators: []promotion.User{{ID: 2, Username: "olga"}}}, keys)
}

func (w *testWorld) apply(events ...promotion.Event) error {
	w.t.Helper()
	p, _ := w.snap.policy("shop")
	return w.runner.apply(context.Background(), w.snap, p, events)
}

func (w *testWorld) record() record {
	w.t.Helper()
	rec, _, err := w.runner.load(context.Background(), "shop")
	if err != nil {
		w.t.Fatal(err)
	}
	return rec
}

func (w *testWorld) phase(stage string) promotion.Phase {
	w.t.Helper()
	st := w.record().State.Stage(stage)
	if st == nil || st.Promotion == nil {
		return ""
	}
	return st.Promotion.Phase
}

func (w *testWorld) outboxTypes() []string {
	var out []string
	for _, e := range w.record().Outbox {
		out = append(out, e.Type)
	}
	return out
}

const (
	img1 = "harbor.example.com/team/shop@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	img2 = "harbor.example.com/team/shop@sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func landedIn(stage, image, commit string) promotion.Landed {
	return promotion.Landed{Stage: stage, Image: image, SourceProject: "team/shop", SourceCommit: "src-" + image[len(image)-4:], Commit: commit,
		Pusher: testBot, ChangeAuthors: []promotion.User{{ID: 30, Username: "dev-dora"}}}
}
