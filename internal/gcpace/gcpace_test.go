package gcpace

import (
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func gcPercent() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// waitPercent waits until the collector's percentage is want: a phase's
// end sets it back in its own goroutine.
func waitPercent(t *testing.T, want int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); gcPercent() != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC = %d after the phase, want %d again", gcPercent(), want)
		}
	}
}

func TestSetUntil(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	done := make(chan struct{})
	if SetUntil(300, done) == nil {
		t.Fatal("SetUntil says it left the default alone")
	}
	if got := gcPercent(); got != 300 {
		t.Fatalf("GOGC during the phase = %d, want 300", got)
	}
	close(done)
	waitPercent(t, 100)

	// A percentage the user chose stays.
	debug.SetGCPercent(50)
	if SetUntil(300, make(chan struct{})) != nil {
		t.Error("SetUntil says it changed the user's percentage")
	}
	if got := gcPercent(); got != 50 {
		t.Errorf("GOGC = %d, want the user's 50", got)
	}
}

func TestPhaseSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	done := make(chan struct{})
	p := SetUntil(70, done)
	if p == nil {
		t.Fatal("SetUntil says it left the default alone")
	}
	p.Set(50)
	if got := gcPercent(); got != 50 {
		t.Fatalf("GOGC after Set = %d, want 50", got)
	}
	close(done)
	waitPercent(t, 100)
	p.Set(50) // the phase is over: the percentage stays
	if got := gcPercent(); got != 100 {
		t.Errorf("GOGC after Set on a phase that is over = %d, want 100", got)
	}

	// A phase SetUntil did not start changes nothing.
	debug.SetGCPercent(80)
	var none *Phase = SetUntil(300, make(chan struct{}))
	none.Set(50)
	if got := gcPercent(); got != 80 {
		t.Errorf("GOGC = %d, want the user's 80", got)
	}
}
