package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lotse/lotse/test/gitlabsim"
)

// TestGateFailureAndChatOps: an unsigned image is blocked before staging and
// the reason is shown; /lotse commands work for operators only.
func TestGateFailureAndChatOps(t *testing.T) {
	w := newWorld(t)
	w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	w.bumpDev(w.images["unsigned"])
	eventually(t, "staging to be blocked", 30*time.Second, func() (bool, string) {
		st := w.statuses()
		return st["lotse/staging"] == "failed", w.describeStatuses()
	})
	if !strings.Contains(w.describeStatuses(), "signature") {
		t.Errorf("the failed status does not say why: %s", w.describeStatuses())
	}
	if _, ok := w.openMR("staging"); ok {
		t.Error("an MR was opened for a blocked promotion")
	}
	if got := w.valuesDigest("staging"); got == digestOf(w.images["unsigned"]) {
		t.Fatal("the unsigned image reached staging")
	}

	// The signed image goes through, then an operator rolls staging back
	// from the production MR with ChatOps.
	w.bumpDev(w.images["v1"])
	eventually(t, "v1 in staging", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("staging") == digestOf(w.images["v1"]), w.describeStatuses()
	})
	mr := waitMR(t, w, "production")
	_, err := w.sim.CreateNote(gitopsProject, int(mr.IID), "dev1", "/lotse promote production")
	must(t, err)
	eventually(t, "a refusal for dev1", 15*time.Second, func() (bool, string) {
		notes, _ := w.client("alice").Notes(context.Background(), gitopsProject, mr.IID)
		for _, n := range notes {
			if n.Author.Username == "lotse-bot" && strings.Contains(n.Body, "dev1") && !strings.HasPrefix(n.Body, "<!--") {
				return true, n.Body
			}
		}
		return false, fmt.Sprint(len(notes), " notes")
	})
	if got := w.valuesDigest("production"); got == digestOf(w.images["v1"]) {
		t.Fatal("an unauthorized command promoted to production")
	}
}

// TestRollbackChatOps: two versions pass through staging; an operator asks
// for a rollback in a note, and staging goes back to the first through a
// merge request labelled rollback.
func TestRollbackChatOps(t *testing.T) {
	w := newWorld(t)
	w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	for _, img := range []string{"high", "v1"} {
		w.bumpDev(w.images[img])
		eventually(t, img+" in staging", 30*time.Second, func() (bool, string) {
			return w.valuesDigest("staging") == digestOf(w.images[img]), w.describeStatuses()
		})
	}
	mr := waitMR(t, w, "production")
	_, err := w.sim.CreateNote(gitopsProject, int(mr.IID), "alice", "/lotse rollback staging")
	must(t, err)
	eventually(t, "staging rolled back to the previous image", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("staging") == digestOf(w.images["high"]), "staging holds " + w.valuesDigest("staging")
	})
	var found bool
	for iid := 1; iid <= 6; iid++ {
		m, err := w.sim.MergeRequest(gitopsProject, iid)
		if err == nil && strings.Contains(strings.Join(m.Labels, ","), "rollback") && m.State == "merged" {
			found = true
		}
	}
	if !found {
		t.Error("no merged MR labelled rollback")
	}
}

// TestScanGate: an image whose attested scan has a HIGH finding passes
// staging (maximum critical) and is blocked before production (maximum
// high), with the reason in the commit status.
func TestScanGate(t *testing.T) {
	w := newWorld(t)
	w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	w.bumpDev(w.images["high"])
	eventually(t, "staging", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("staging") == digestOf(w.images["high"]), w.describeStatuses()
	})
	eventually(t, "production to be blocked by the scan gate", 30*time.Second, func() (bool, string) {
		return w.statuses()["lotse/production"] == "failed", w.describeStatuses()
	})
	if d := w.describeStatuses(); !strings.Contains(d, "HIGH") {
		t.Errorf("the failed status does not name the severity: %s", d)
	}
	if _, ok := w.openMR("production"); ok {
		t.Error("a production MR was opened for a blocked image")
	}
}

// TestDuplicatesAndFaults: GitLab re-sends every delivery and answers a
// share of lotsed's calls with 429 and 502; every promotion still finishes,
// with no second MR and no second sticky comment.
func TestDuplicatesAndFaults(t *testing.T) {
	w := newWorld(t)
	w.sim.SetWebhookFaults(gitlabsim.WebhookFaults{DuplicateEvery: 1})
	w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	w.sim.Faults(
		gitlabsim.Fault{Status: 429, Every: 4, RetryAfter: 1},
		gitlabsim.Fault{Method: "GET", Status: 502, Every: 7},
	)
	w.bumpDev(w.images["v1"])
	mr := waitMR(t, w, "production")
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "alice"))
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "bob"))
	eventually(t, "production", 60*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(w.images["v1"]), w.describeStatuses()
	})
	if w.sim.FaultsInjected() == 0 {
		t.Fatal("no fault was injected: the test proves nothing")
	}
	for _, iid := range []int64{1, 2} {
		// The comment follows the merge; with faults it may take a retry.
		eventually(t, fmt.Sprintf("one sticky comment on !%d", iid), 20*time.Second, func() (bool, string) {
			n := countMarked(t, w, gitopsProject, iid)
			return n == 1, fmt.Sprint(n)
		})
	}
	if n := countMarked(t, w, appProject, 1); n != 1 {
		t.Errorf("app MR has %d sticky comments, want 1", n)
	}
	mrs := 0
	for iid := 1; iid <= 5; iid++ {
		if _, err := w.sim.MergeRequest(gitopsProject, iid); err == nil {
			mrs++
		}
	}
	if mrs != 2 {
		t.Errorf("%d MRs in the GitOps project, want 2 (staging, production)", mrs)
	}
}

// startChild runs lotsed as a child process of the test binary, so that the
// test can kill it.
func (w *world) startChild(t *testing.T, addr, dbURL string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	// Its temporary directory is the test's: a killed lotsed cannot remove
	// what it keeps there (the public keys it verifies with).
	cmd.Env = append(os.Environ(), "LOTSED_E2E_CHILD=1", "TMPDIR="+t.TempDir())
	for k, v := range w.env(addr, dbURL) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "lotsed.log"))
	must(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("lotsed %s log:\n%s", addr, lastLines(string(b), 40))
		}
	})
	waitReady(t, "http://"+addr)
	return cmd
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestKilledWhileQueued: lotsed is SIGKILLed while deliveries are queued;
// restarted on the same database it loses nothing and does nothing twice.
func TestKilledWhileQueued(t *testing.T) {
	w := newWorld(t)
	db := filepath.Join(t.TempDir(), "lotsed.db")
	addr := freeAddr(t)
	// Deliveries arrive slowly enough that the kill finds some queued.
	first := w.startChild(t, addr, db)
	w.hook("http://" + addr)
	w.bumpDev(w.images["v1"])
	time.Sleep(300 * time.Millisecond)
	must(t, first.Process.Signal(syscall.SIGKILL))
	first.Wait()

	// GitLab keeps sending while lotsed is down; they fail and are lost
	// to GitLab — what was acknowledged must not be.
	w.startChild(t, addr, db)
	mr := waitMR(t, w, "production")
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "alice"))
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "bob"))
	eventually(t, "production after the restart", 60*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(w.images["v1"]), w.describeStatuses()
	})
	if n := countMarked(t, w, gitopsProject, mr.IID); n != 1 {
		t.Errorf("production MR has %d sticky comments, want 1", n)
	}
}

// TestTwoReplicasOnPostgres: two lotsed replicas share one PostgreSQL and
// both receive every webhook; the promotion happens once.
func TestTwoReplicasOnPostgres(t *testing.T) {
	url := os.Getenv("LOTSE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("LOTSE_TEST_POSTGRES_URL is not set (make test starts PostgreSQL with scripts/postgres.sh)")
	}
	dbURL := freshDatabase(t, url)
	w := newWorld(t)
	for range 2 {
		addr := freeAddr(t)
		w.startChild(t, addr, dbURL)
		w.hook("http://" + addr)
	}
	w.bumpDev(w.images["v1"])
	mr := waitMR(t, w, "production")
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "alice"))
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "bob"))
	eventually(t, "production with two replicas", 60*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(w.images["v1"]), w.describeStatuses()
	})
	for _, iid := range []int64{1, 2} {
		// The comment follows the merge; with faults it may take a retry.
		eventually(t, fmt.Sprintf("one sticky comment on !%d", iid), 20*time.Second, func() (bool, string) {
			n := countMarked(t, w, gitopsProject, iid)
			return n == 1, fmt.Sprint(n)
		})
	}
	if _, err := w.sim.MergeRequest(gitopsProject, 3); err == nil {
		t.Error("a third MR was opened")
	}
}
