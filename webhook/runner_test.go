package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// A version that lands in dev travels to staging through the runner alone:
// gates checked with the snapshot's key, the MR opened, merged, the outbox
// empty at the end.
func TestRunnerPromotesThroughTheOutbox(t *testing.T) {
	w := newTestWorld(t)
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = []string{"LOW", "MEDIUM"} // staging allows below HIGH
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	if got := w.phase("staging"); got != promotion.PhaseMerged {
		t.Fatalf("staging phase = %s, want merged; audit %v", got, w.records.kinds("shop"))
	}
	if out := w.outboxTypes(); len(out) != 0 {
		t.Fatalf("outbox not empty: %v", out)
	}
	if n := w.gl.count("merge"); n != 1 {
		t.Fatalf("merges = %d, want 1", n)
	}
	for _, k := range w.verifier.keys {
		if k != "/keys/k1.pub" {
			t.Fatalf("verified with %q, want the snapshot's key", k)
		}
	}
	if st := w.gl.status("team/shop", "src-1111", "lotse/staging"); st != gitlab.StatusRunning {
		t.Fatalf("staging status = %q, want running (merged, waiting for the landing)", st)
	}
	if got := w.records.kinds("shop"); !slices.Contains(got, promotion.AuditMerged) || !slices.Contains(got, promotion.AuditGatesPassed) {
		t.Fatalf("audit = %v", got)
	}
}

// The engine judges the scan facts with the policy the event runs with: a
// MEDIUM finding passes staging (max HIGH) and blocks production (max
// MEDIUM).
func TestRunnerScanVerdictFromThePolicy(t *testing.T) {
	w := newTestWorld(t)
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = []string{"MEDIUM"}
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	if err := w.apply(landedIn("staging", img1, "c2")); err != nil {
		t.Fatal(err)
	}
	pr := w.record().State.Stage("production").Promotion
	if pr.Phase != promotion.PhaseBlocked || !strings.Contains(pr.Reason, "highest MEDIUM, at or above the stage's maximum MEDIUM") {
		t.Fatalf("production = %s %q", pr.Phase, pr.Reason)
	}
}

// An action that fails stays at the head of the outbox; the next run for
// the app (a retried delivery, a tick) carries it out. It is never lost.
func TestRunnerFailedActionIsRetried(t *testing.T) {
	w := newTestWorld(t)
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = nil
	w.gl.failNext("merge", 2)
	err := w.apply(landedIn("dev", img1, "c1"))
	if !errors.Is(err, gitlab.ErrUnavailable) {
		t.Fatalf("apply = %v, want GitLab's error", err)
	}
	if out := w.outboxTypes(); len(out) == 0 || out[0] != "merge-mr" {
		t.Fatalf("outbox = %v, want the merge at its head", out)
	}
	if err := w.apply(promotion.Tick{}); !errors.Is(err, gitlab.ErrUnavailable) {
		t.Fatalf("second apply = %v", err)
	}
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatalf("third apply: %v", err)
	}
	if got := w.phase("staging"); got != promotion.PhaseMerged {
		t.Fatalf("phase = %s, want merged", got)
	}
	if n := w.gl.count("merge"); n != 3 {
		t.Fatalf("merge calls = %d, want 3 (two failed, one merged)", n)
	}
	if out := w.outboxTypes(); len(out) != 0 {
		t.Fatalf("outbox = %v", out)
	}
}

// A crash between saving the state and carrying out its actions: the
// actions wait in the outbox and the next run carries them out.
func TestRunnerCrashBetweenSaveAndPerform(t *testing.T) {
	w := newTestWorld(t)
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = nil
	p, _ := w.snap.policy("shop")
	// step saves the state and the outbox, as apply does before acting;
	// then the process "dies".
	if err := w.runner.step(context.Background(), p, []promotion.Event{landedIn("dev", img1, "c1")}, nil); err != nil {
		t.Fatal(err)
	}
	out := w.outboxTypes()
	if !slices.Contains(out, "check-gates") || !slices.Contains(out, "audit") {
		t.Fatalf("outbox after save = %v", out)
	}
	if n := len(w.verifier.keys); n != 0 {
		t.Fatalf("verified before perform: %d", n)
	}
	// A new runner over the same store: the next event for the app first
	// carries out what is pending.
	w2 := &runner{states: w.runner.states, effects: w.runner.effects, now: w.runner.now, log: w.runner.log}
	if err := w2.apply(context.Background(), w.snap, p, []promotion.Event{promotion.Tick{}}); err != nil {
		t.Fatal(err)
	}
	if got := w.phase("staging"); got != promotion.PhaseMerged {
		t.Fatalf("phase after restart = %s", got)
	}
	if got := w.records.kinds("shop"); !slices.Contains(got, promotion.AuditLanded) {
		t.Fatalf("audit after restart = %v", got)
	}
}

// Every action may be carried out twice (a crash after the effect, before
// the pop); it has one effect.
func TestEffectsTwiceHaveOneEffect(t *testing.T) {
	w := newTestWorld(t)
	eff := w.runner.effects.(*effects)
	ctx := context.Background()
	mr, _ := w.gl.openMR("shop", "staging", img1)
	at := w.now
	for _, a := range []promotion.Action{
		promotion.Reply{IID: int(mr.IID), Body: "Only operators may do that."},
		promotion.Audit{App: "shop", Kind: promotion.AuditApproved, Stage: "production", Actor: promotion.User{ID: 4, Username: "carol"}, At: at},
		promotion.UpsertComment{Target: promotion.CommentTarget{Stage: "staging", IID: int(mr.IID)}, Body: promotion.Marker("shop", "staging") + "\nbody"},
		promotion.SetStatus{SourceProject: "team/shop", SourceCommit: "abc", Name: "lotse/staging", State: promotion.StatusRunning},
		promotion.MergeMR{Stage: "staging", IID: int(mr.IID), SHA: mr.SHA, Attempt: 1},
	} {
		for range 2 {
			if _, err := eff.perform(ctx, w.snap, "shop", a); err != nil {
				t.Fatalf("%T: %v", a, err)
			}
		}
	}
	// Opening the MR of a promotion twice (a crash, or two replicas with the
	// same outbox entry) keeps the first MR.
	for range 2 {
		ev, err := eff.perform(ctx, w.snap, "shop", promotion.OpenMR{Stage: "production", Image: img2})
		if err != nil || len(ev) != 1 {
			t.Fatalf("open-mr: %v %v", ev, err)
		}
	}
	if open, _ := w.gl.OpenMRs(ctx, "platform/gitops", "lotse/shop/production"); len(open) != 1 {
		t.Fatalf("open production MRs: %+v", open)
	}
	notes, _ := w.gl.Notes(ctx, "platform/gitops", mr.IID)
	if len(notes) != 2 {
		t.Fatalf("notes = %d, want one reply and one sticky comment: %+v", len(notes), notes)
	}
	if n := len(w.records.audit); n != 1 {
		t.Fatalf("audit records = %d, want 1", n)
	}
	if n := w.gl.count("merge"); n != 1 {
		t.Fatalf("merge calls = %d, want 1 (the second sees it merged)", n)
	}
	if w.gl.status("team/shop", "abc", "lotse/staging") != gitlab.StatusRunning {
		t.Fatal("status not posted")
	}
}

// A reply whose note could not be written is written by the retry: the
// claim is given back.
func TestReplyRetriedAfterFailure(t *testing.T) {
	w := newTestWorld(t)
	eff := w.runner.effects.(*effects)
	ctx := context.Background()
	a := promotion.Reply{IID: 3, Body: "done"}
	w.gl.failNext("create-note", 1)
	if _, err := eff.perform(ctx, w.snap, "shop", a); err == nil {
		t.Fatal("want the failure")
	}
	if _, err := eff.perform(ctx, w.snap, "shop", a); err != nil {
		t.Fatal(err)
	}
	if notes, _ := w.gl.Notes(ctx, "platform/gitops", 3); len(notes) != 1 {
		t.Fatalf("notes = %+v, want the one reply", notes)
	}
}

// An outbox entry this lotsed cannot decode is never skipped: the run
// fails permanently, naming it, and the entry stays.
func TestUnknownOutboxActionIsNotDropped(t *testing.T) {
	for _, tc := range []struct{ name, entry, want string }{
		{"unknown type", `{"type":"frobnicate","v":1,"data":{}}`, `unknown action "frobnicate"`},
		{"newer version", `{"type":"merge-mr","v":7,"data":{}}`, `payload version 7`},
		{"bad payload", `{"type":"merge-mr","v":1,"data":{"IID":"x"}}`, `merge-mr action`},
		{"unknown field", `{"type":"merge-mr","v":1,"data":{"Stage":"staging","IID":1,"Force":true}}`, `unknown field "Force"`},
		{"unknown legacy", `{"type":"promotion.Frobnicate","data":{}}`, `unknown action "promotion.Frobnicate" of version 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTestWorld(t)
			if err := w.states.SaveState(context.Background(), "shop", []byte(`{"state":{"app":"shop"},"outbox":[`+tc.entry+`]}`), 0); err != nil {
				t.Fatal(err)
			}
			err := w.apply(promotion.Tick{})
			var pe *permanentError
			if !errors.As(err, &pe) || !errors.Is(err, errUndecodable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("apply = %v, want a permanent error with %q", err, tc.want)
			}
			if out := w.outboxTypes(); len(out) != 1 {
				t.Fatalf("outbox = %v, want the entry kept", out)
			}
		})
	}
}

// Outboxes written by an older lotsed (Go type names, version 0, fields
// since dropped) still decode and are carried out.
func TestLegacyOutboxDecodes(t *testing.T) {
	w := newTestWorld(t)
	legacy := `{"state":{"app":"shop"},"outbox":[{"type":"promotion.SetStatus","data":{"SourceProject":"team/shop","SourceCommit":"abc","Name":"lotse/dev","State":"success","Description":"running in dev"}},` +
		`{"type":"promotion.OpenMR","data":{"Stage":"staging","Image":"` + img1 + `","ResetApprovals":true}}]}`
	if err := w.states.SaveState(context.Background(), "shop", []byte(legacy), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatal(err)
	}
	if w.gl.status("team/shop", "abc", "lotse/dev") != gitlab.StatusSuccess || len(w.writer.bumps) != 1 {
		t.Fatalf("legacy actions not carried out: status %q, bumps %d", w.gl.status("team/shop", "abc", "lotse/dev"), len(w.writer.bumps))
	}
}

// Every action the engine can emit has a stable name and survives the
// outbox round trip.
func TestEveryActionRoundTrips(t *testing.T) {
	for _, a := range []promotion.Action{
		promotion.OpenMR{Stage: "s", Image: img1, SourceProject: "p", SourceCommit: "c"},
		promotion.Rollback{Stage: "s", Image: img1},
		promotion.MergeMR{Stage: "s", IID: 3, Attempt: 2},
		promotion.CheckGates{Stage: "s", Image: img1, Signature: true, Scan: true},
		promotion.SetStatus{SourceProject: "p", SourceCommit: "c", Name: "lotse/s", State: "running", Description: "d"},
		promotion.UpsertComment{Target: promotion.CommentTarget{Stage: "s", IID: 3}, Body: "b"},
		promotion.Reply{Project: "p", IID: 3, Body: "b"},
		promotion.Audit{App: "a", Kind: "k", Stage: "s", At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		promotion.CloseMR{Stage: "s", IID: 3, Comment: "c"},
		promotion.ReadAuthors{Stage: "s", Image: img1, SourceProject: "p", SourceCommit: "c"},
		promotion.Reconcile{Stage: "s", IID: 3},
		promotion.AttestPromotion{Stage: "s", Image: img1, Record: promotion.Record{App: "a", Stage: "s", PromotionID: 3, Image: img1,
			Approvals: promotion.RecordApprovals{Required: 2, Counted: []promotion.RecordApproval{{User: promotion.RecordUser{ID: 4, Username: "carol"}}}}}},
		promotion.Deploy{Stage: "s", Tier: "production", URL: "https://x", Image: img1, SourceProject: "p", SourceCommit: "c", Commit: "g",
			LandedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Rollback: true, Status: "failed", Cause: promotion.CauseRolledBack, Detail: "d",
			At: time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC)},
	} {
		e, err := encodeAction(a)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(e)
		var back envelope
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		got, err := decodeAction(back)
		if err != nil || !equalAction(got, a) {
			t.Fatalf("%T: round trip %+v, %v", a, got, err)
		}
	}
}

func equalAction(a, b promotion.Action) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// One snapshot per event: a reload while an event is being processed does
// not change the key its gates verify with.
func TestOneSnapshotPerEvent(t *testing.T) {
	w := newTestWorld(t)
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = nil
	w.verifier.hold = make(chan struct{})
	src := &configSource{gitopsProject: "platform/gitops"}
	snaps := []*snapshot{w.snap, snapshotOf(w.snap.config, w.writer, gateKeys{signer: trust.Signer{Key: "/keys/k2.pub"}})}
	var n int
	src.read = func(context.Context) (*snapshot, error) { s := snaps[min(n, 1)]; n++; return s, nil }
	snap, _ := src.current(context.Background())
	done := make(chan error, 1)
	go func() {
		p, _ := snap.policy("shop")
		done <- w.runner.apply(context.Background(), snap, p, []promotion.Event{landedIn("dev", img1, "c1")})
	}()
	if _, err := src.reload(context.Background()); err != nil { // lotse.yaml changed meanwhile
		t.Fatal(err)
	}
	close(w.verifier.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, k := range w.verifier.keys {
		if k != "/keys/k1.pub" {
			t.Fatalf("the event verified with %q after a reload, want its own snapshot's key", k)
		}
	}
	if cur, _ := src.current(context.Background()); cur.keys.signer.Key != "/keys/k2.pub" {
		t.Fatal("the reload did not take effect for later events")
	}
}

// Readers and reloads of the config run concurrently without a data race
// (go test -race).
func TestConfigSourceConcurrentReload(t *testing.T) {
	w := newTestWorld(t)
	src := &configSource{gitopsProject: "platform/gitops", read: func(context.Context) (*snapshot, error) {
		return snapshotOf(w.snap.config, w.writer, gateKeys{signer: trust.Signer{Key: "/k"}}), nil
	}}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				s, err := src.current(context.Background())
				if err != nil || s.keys.signer.Key != "/k" || !src.watches("team/shop") {
					t.Error("bad snapshot")
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if _, err := src.reload(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

// A delivery whose processing fails permanently is parked as dead at once
// with the reason, visible in GET /api/v1/events?state=dead.
func TestUndecodableOutboxParksDeliveryDead(t *testing.T) {
	w := newTestWorld(t)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "lotsed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w.runner.states = db
	if err := db.SaveState(ctx, "shop", []byte(`{"state":{"app":"shop"},"outbox":[{"type":"frobnicate","v":1,"data":{}}]}`), 0); err != nil {
		t.Fatal(err)
	}
	src := &configSource{gitopsProject: "platform/gitops", read: func(context.Context) (*snapshot, error) { return w.snap, nil }}
	disp := &dispatcher{config: src, runner: w.runner, commits: w.gl, gitopsProject: "platform/gitops", bot: testBot,
		now: func() time.Time { return w.now }, log: slog.New(slog.DiscardHandler)}
	wk := &workers{queue: db, handoff: newHandoff("me/intake", time.Minute, 0), proc: disp, owner: "me", n: 1, ttl: time.Minute, maxAttempts: 8,
		metrics: newMetrics(), now: time.Now, log: slog.New(slog.DiscardHandler)}
	body := `{"app":"shop","stage":"dev","health":"Healthy","sync":"Synced"}`
	if _, _, err := db.Enqueue(ctx, store.Delivery{Source: "argocd", Event: "ArgoCD Notification", Key: "k1", Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	ds, err := db.Lease(ctx, "me/0", 10, time.Minute, time.Now())
	if err != nil || len(ds) != 1 {
		t.Fatalf("lease: %v %v", ds, err)
	}
	if wk.handle(ctx, "me/0", handed{d: ds[0]}) {
		t.Fatal("handled as done")
	}
	s, _, h := testServer(t, nil)
	s.queue = db
	req := httptest.NewRequest(http.MethodGet, "/api/v1/events?state=dead", nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `unknown action \"frobnicate\"`) {
		t.Fatalf("dead events: %d %s", rec.Code, rec.Body)
	}
}

// A push onto lotse's MR whose webhook never arrived is caught when lotse
// merges: the MR has a commit lotse did not write, so it is closed as
// tampered and nothing is merged.
func TestMergeChecksTheMRItself(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(gl *fakeGitLab, iid int64)
		want   string
	}{
		{"extra commit", func(gl *fakeGitLab, iid int64) {
			gl.push(iid, gitlab.Commit{SHA: "evil", AuthorName: "Mallory", AuthorEmail: "m@example.com"})
		}, "has commits lotse did not write (evil by Mallory <m@example.com>)"},
		{"another file", func(gl *fakeGitLab, iid int64) {
			gl.diffs[iid] = append(gl.diffs[iid], gitlab.Diff{OldPath: "lotse.yaml", NewPath: "lotse.yaml"})
		}, "changes apps/shop/envs/staging/values.yaml, lotse.yaml"},
		{"not lotse's", func(gl *fakeGitLab, iid int64) { gl.mrs[iid].Author = gitlab.User{ID: 9, Username: "mallory"} }, "opened by mallory"},
		{"another target", func(gl *fakeGitLab, iid int64) { gl.mrs[iid].TargetBranch = "release" }, "targets release"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTestWorld(t)
			w.verifier.signed[img1] = true
			w.verifier.vulns[img1] = nil
			w.gl.failNext("merge", 1) // the first merge fails: the promotion waits in merging
			_ = w.apply(landedIn("dev", img1, "c1"))
			pr := w.record().State.Stage("staging").Promotion
			if pr.MR == nil {
				t.Fatalf("no MR: %+v", pr)
			}
			tc.tamper(w.gl, int64(pr.MR.IID))
			if err := w.apply(promotion.Tick{}); err != nil {
				t.Fatal(err)
			}
			pr = w.record().State.Stage("staging").Promotion
			if pr.Phase != promotion.PhaseTampered || !strings.Contains(pr.Reason, tc.want) {
				t.Fatalf("promotion %s %q, want tampered with %q", pr.Phase, pr.Reason, tc.want)
			}
			if w.gl.mrs[int64(pr.MR.IID)].State != "closed" || w.gl.count("merge") != 1 {
				t.Fatalf("MR %s after %d merge calls", w.gl.mrs[int64(pr.MR.IID)].State, w.gl.count("merge"))
			}
		})
	}
}

// A Developer's MR on lotse's branch is closed before lotse opens its own,
// and reported; lotse's own MR is fresh.
func TestOpenMRClosesOthersOnTheBranch(t *testing.T) {
	w := newTestWorld(t)
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = nil
	dev := w.gl.openForeignMR("lotse/shop/staging", gitlab.User{ID: 9, Username: "mallory"})
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	if w.gl.mrs[dev.IID].State != "closed" {
		t.Fatal("the Developer's MR is still open")
	}
	pr := w.record().State.Stage("staging").Promotion
	if pr.MR == nil || pr.MR.IID == int(dev.IID) || pr.Phase != promotion.PhaseMerged {
		t.Fatalf("promotion %+v", pr)
	}
	var found bool
	for _, r := range w.records.audit {
		found = found || r.Kind == promotion.AuditTampered && strings.Contains(r.Detail, fmt.Sprintf("closed !%d by @mallory", dev.IID))
	}
	if !found {
		t.Fatalf("no tampered audit: %+v", w.records.audit)
	}
}

// The webhooks of two approvals were lost (GitLab was down longer than the
// deliveries' retries): the next ticks read the MR back and merge it, and a
// revocation read back revokes.
func TestTickReconcilesLostWebhooks(t *testing.T) {
	w := newTestWorld(t)
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = nil
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	if err := w.apply(landedIn("staging", img1, "c2")); err != nil {
		t.Fatal(err)
	}
	pr := w.record().State.Stage("production").Promotion
	if pr.Phase != promotion.PhaseAwaitingApproval {
		t.Fatalf("production %s", pr.Phase)
	}
	iid := int64(pr.MR.IID)
	// carol approves, her webhook is lost; the tick reads it back.
	w.gl.approved[iid] = []gitlab.User{{ID: 4, Username: "carol"}}
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatal(err)
	}
	if got := promotion.ValidApprovers(w.snap.policies["shop"], w.record().State, "production"); len(got) != 1 {
		t.Fatalf("approvers after a tick = %v", got)
	}
	// carol revokes and erin approves, both webhooks lost: still one.
	w.gl.approved[iid] = []gitlab.User{{ID: 8, Username: "erin"}}
	_ = w.apply(promotion.Tick{})
	if got := promotion.ValidApprovers(w.snap.policies["shop"], w.record().State, "production"); len(got) != 1 || got[0].ID != 8 {
		t.Fatalf("approvers after a revocation = %v", got)
	}
	w.gl.approved[iid] = append(w.gl.approved[iid], gitlab.User{ID: 4, Username: "carol"})
	_ = w.apply(promotion.Tick{})
	if w.phase("production") != promotion.PhaseMerged || w.gl.mrs[iid].State != "merged" {
		t.Fatalf("production %s, MR %s", w.phase("production"), w.gl.mrs[iid].State)
	}
}

// slowProcessor takes its time over every delivery.
type slowProcessor struct{ d time.Duration }

func (p slowProcessor) process(ctx context.Context, _ store.Delivery, _ *gitlabHook) error {
	time.Sleep(p.d)
	return nil
}

// While a worker is still on a batch (GitLab slow), it renews the leases:
// no other worker takes the deliveries meanwhile.
func TestWorkerRenewsLeases(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "lotsed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for i := range 2 {
		if _, _, err := db.Enqueue(ctx, store.Delivery{Source: "gitlab", Key: fmt.Sprint(i), Body: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	ttl := 300 * time.Millisecond
	wk := &workers{queue: db, handoff: newHandoff("me/intake", ttl, 0), proc: slowProcessor{ttl}, owner: "me", n: 1, ttl: ttl,
		maxAttempts: 3, metrics: newMetrics(), now: time.Now, log: slog.New(slog.DiscardHandler)}
	ds, err := db.Lease(ctx, "me/0", 10, ttl, time.Now())
	if err != nil || len(ds) != 2 {
		t.Fatalf("lease: %v %v", ds, err)
	}
	hs := []handed{{d: ds[0]}, {d: ds[1]}}
	done := make(chan struct{})
	go func() { wk.batch(ctx, "me/0", hs); close(done) }()
	// The second delivery waits 2×ttl in all; halfway through, its first
	// lease has run out, and it must not be for the taking.
	time.Sleep(ttl + ttl/2)
	if got, err := db.Lease(ctx, "other", 10, time.Minute, time.Now()); err != nil || len(got) != 0 {
		t.Fatalf("another worker leased %d deliveries a worker still worked on (%v)", len(got), err)
	}
	<-done
	if st, _ := db.Stats(ctx); st[store.Done] != 2 {
		t.Fatalf("stats %v", st)
	}
}

// An approval stage merges only when the latest pipeline GitLab ran for
// lotse's commit (on a push or for the MR) succeeded: a running one waits, a
// failed one blocks with its link, a green pipeline posted from outside
// (commit statuses) does not count.
func TestPipelineGate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pipelines []gitlab.Pipeline
		phase     promotion.Phase
		reason    string
	}{
		{"green", []gitlab.Pipeline{{ID: 7, Status: "success", Source: "push"}}, promotion.PhaseMerged, ""},
		{"running", []gitlab.Pipeline{{ID: 7, Status: "running", Source: "merge_request_event"}}, promotion.PhaseMerging, "waiting for pipeline #7"},
		{"failed", []gitlab.Pipeline{{ID: 7, Status: "failed", Source: "push", WebURL: "https://gl/p/7"}}, promotion.PhaseBlocked, "pipeline #7 for lotse's commit"},
		{"only an external one", []gitlab.Pipeline{{ID: 9, Status: "success", Source: "external"}}, promotion.PhaseMerging, "none ran yet"},
		{"a newer failed one wins", []gitlab.Pipeline{{ID: 8, Status: "failed", Source: "push"}, {ID: 7, Status: "success", Source: "push"}}, promotion.PhaseBlocked, "#8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTestWorld(t)
			w.verifier.signed[img1] = true
			w.verifier.vulns[img1] = nil
			_ = w.apply(landedIn("dev", img1, "c1"))
			_ = w.apply(landedIn("staging", img1, "c2"))
			pr := w.record().State.Stage("production").Promotion
			w.gl.pipelines[pr.MR.SHA] = tc.pipelines
			w.gl.approved[int64(pr.MR.IID)] = []gitlab.User{{ID: 4, Username: "carol"}, {ID: 8, Username: "erin"}}
			_ = w.apply(promotion.Tick{})
			_ = w.apply(promotion.Tick{})
			pr = w.record().State.Stage("production").Promotion
			if pr.Phase != tc.phase || !strings.Contains(pr.Reason, tc.reason) {
				t.Fatalf("production %s %q, want %s with %q", pr.Phase, pr.Reason, tc.phase, tc.reason)
			}
			if merged := w.gl.mrs[int64(pr.MR.IID)].State == "merged"; merged != (tc.phase == promotion.PhaseMerged) {
				t.Fatalf("MR merged = %v", merged)
			}
		})
	}
}

// POST /api/v1/freeze (admin) stops the line in every app; DELETE lifts it.
func TestFreezeAPI(t *testing.T) {
	w := newTestWorld(t)
	src := &configSource{gitopsProject: "platform/gitops", read: func(context.Context) (*snapshot, error) { return w.snap, nil }}
	disp := &dispatcher{config: src, runner: w.runner, commits: w.gl, files: w.gl, authors: &authorsReader{gl: w.gl},
		gitopsProject: "platform/gitops", bot: testBot, now: func() time.Time { return w.now }, log: slog.New(slog.DiscardHandler)}
	s, _, h := testServer(t, nil)
	s.freezer = disp
	call := func(method, path, token, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := call(http.MethodPost, "/api/v1/freeze", readToken, `{"stage":"production","reason":"incident"}`); rec.Code != http.StatusForbidden {
		t.Fatalf("read token: %d", rec.Code)
	}
	if rec := call(http.MethodPost, "/api/v1/freeze", adminToken, `{"stage":"production"}`); rec.Code != http.StatusBadRequest {
		t.Fatalf("no reason: %d", rec.Code)
	}
	if rec := call(http.MethodPost, "/api/v1/freeze", adminToken, `{"stage":"prod","reason":"x"}`); rec.Code != http.StatusBadRequest {
		t.Fatalf("unknown stage: %d %s", rec.Code, rec.Body)
	}
	if rec := call(http.MethodPost, "/api/v1/freeze", adminToken, `{"stage":"production","reason":"incident 42"}`); rec.Code != http.StatusOK {
		t.Fatalf("freeze: %d %s", rec.Code, rec.Body)
	}
	if f := w.record().State.Frozen["production"]; f == nil || f.Reason != "incident 42" {
		t.Fatalf("frozen = %+v", w.record().State.Frozen)
	}
	if rec := call(http.MethodDelete, "/api/v1/freeze?stage=production", adminToken, ""); rec.Code != http.StatusOK {
		t.Fatalf("lift: %d %s", rec.Code, rec.Body)
	}
	if f := w.record().State.Frozen; len(f) != 0 {
		t.Fatalf("still frozen: %+v", f)
	}
}

// A landing's time is when lotsed received the push, not the timestamp
// the committer wrote into the commit: soak counts from the landing.
func TestLandingTimeIsTheReceipt(t *testing.T) {
	w := newTestWorld(t)
	src := &configSource{gitopsProject: "platform/gitops", read: func(context.Context) (*snapshot, error) { return w.snap, nil }}
	disp := &dispatcher{config: src, runner: w.runner, commits: w.gl, files: w.gl, authors: &authorsReader{gl: w.gl},
		gitopsProject: "platform/gitops", bot: testBot, now: func() time.Time { return w.now }, log: slog.New(slog.DiscardHandler)}
	path := "apps/shop/envs/dev/values.yaml"
	w.gl.files[path+"@c1"] = "image: " + img1 + "\n"
	msg := gitops.CommitMessage("Bump", "", gitops.Trailers{App: "shop", Stage: "dev", Image: img1, SourceProject: "team/shop", SourceCommit: "s1"})
	body := `{"object_kind":"push","ref":"refs/heads/main","user_id":1,"user_username":"lotse-bot","after":"c1","project":{"path_with_namespace":"platform/gitops"},` +
		`"commits":[{"id":"c1","message":` + jsonString(msg) + `,"timestamp":"2020-01-01T00:00:00Z","modified":["` + path + `"]}]}`
	received := time.Date(2026, 12, 4, 9, 30, 0, 0, time.UTC)
	if err := disp.process(context.Background(), store.Delivery{Source: "gitlab", Event: "Push Hook", Body: []byte(body), ReceivedAt: received}, nil); err != nil {
		t.Fatal(err)
	}
	cur := w.record().State.Stage("dev").Current
	if cur == nil || !cur.LandedAt.Equal(received) || cur.Head != "c1" {
		t.Fatalf("dev = %+v, want landed at %s", cur, received)
	}
}

// The status API and the board are served from lotsed's records: no GitLab
// call per request.
func TestStatusWithoutGitLab(t *testing.T) {
	w := newTestWorld(t)
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = nil
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	src := &configSource{gitopsProject: "platform/gitops", read: func(context.Context) (*snapshot, error) { return w.snap, nil }}
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "lotsed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	data, _, _ := w.states.LoadState(context.Background(), "shop")
	if err := db.SaveState(context.Background(), "shop", data, 0); err != nil {
		t.Fatal(err)
	}
	v := &views{config: src, store: db, now: func() time.Time { return w.now }}
	total := func() (n int) {
		for _, c := range w.gl.calls {
			n += c
		}
		return n
	}
	calls := total()
	got, err := v.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	apps := got.([]AppView)
	if n := total() - calls; n != 0 {
		t.Fatalf("status made %d GitLab calls", n)
	}
	if len(apps) != 1 || apps[0].Stages[0].Image != img1 || !strings.HasPrefix(apps[0].Stages[1].Promotion, "merged") || apps[0].UpdatedAt.IsZero() {
		t.Fatalf("status = %+v", apps)
	}
	html, err := renderBoard(got)
	if err != nil || !strings.Contains(string(html), "as of") {
		t.Fatalf("board: %v\n%s", err, html)
	}
}
