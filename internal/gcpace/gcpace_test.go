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

func TestSetUntil(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	done := make(chan struct{})
	if !SetUntil(300, done) {
		t.Fatal("SetUntil says it left the default alone")
	}
	if got := gcPercent(); got != 300 {
		t.Fatalf("GOGC during the phase = %d, want 300", got)
	}
	close(done)
	for deadline := time.Now().Add(5 * time.Second); gcPercent() != 100; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC = %d after the phase, want 100 again", gcPercent())
		}
	}

	// A percentage the user chose stays.
	debug.SetGCPercent(50)
	if SetUntil(300, make(chan struct{})) {
		t.Error("SetUntil says it changed the user's percentage")
	}
	if got := gcPercent(); got != 50 {
		t.Errorf("GOGC = %d, want the user's 50", got)
	}
}
