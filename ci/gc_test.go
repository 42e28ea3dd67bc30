package ci

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

func TestCollectLessUntil(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ready := make(chan struct{})
	collectLessUntil(ready)
	if got := gcPercent(); got != scannerGOGC {
		t.Fatalf("GOGC while the scanner builds = %d, want %d", got, scannerGOGC)
	}
	close(ready)
	for deadline := time.Now().Add(5 * time.Second); gcPercent() != 100; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC = %d after the scanner is ready, want 100 again", gcPercent())
		}
	}

	// A percentage the user chose stays.
	debug.SetGCPercent(50)
	collectLessUntil(make(chan struct{}))
	if got := gcPercent(); got != 50 {
		t.Errorf("GOGC = %d, want the user's 50", got)
	}
}
