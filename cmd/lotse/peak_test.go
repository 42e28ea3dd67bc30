package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// The profile LOTSE_PEAKPROFILE leaves is the one taken at the highest
// resident set: taken again as the set grows, not replaced when it falls.
func TestPeakProfileFollowsTheResidentSet(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("needs /proc/self/statm")
	}
	path := filepath.Join(t.TempDir(), "peak.pprof")
	// Before the first sample: a set an earlier test left, released only
	// after it, would be the peak the held memory never passes.
	debug.FreeOSMemory()
	before := resident(t)
	var stderr bytes.Buffer
	stop, err := startPeakProfile(path, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	held := holdPeak(64 << 20)
	// Sampled every 10 ms: wait for a profile of the whole set (none comes
	// when one taken while it grew is within a step of it).
	taken := modified(t, path)
	for deadline := time.Now().Add(time.Second); modified(t, path).Equal(taken) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(held)
	debug.FreeOSMemory() // the set falls: the profile stays the peak's
	time.Sleep(30 * time.Millisecond)
	stop()

	m := regexp.MustCompile(`^lotse: LOTSE_PEAKPROFILE: heap profile at (\d+) MiB resident, after \S+\n$`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr: %q", stderr.String())
	}
	if at, _ := strconv.ParseInt(m[1], 10, 64); at<<20 < before+48<<20 {
		t.Fatalf("profile taken at %d MiB, below the 64 MiB held above %d MiB", at, before>>20)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains([]byte(p.String()), []byte("holdPeak")) {
		t.Fatal("the profile does not name what held the peak")
	}
}

// holdPeak allocates and touches n bytes, for the profile to name.
//
//go:noinline
func holdPeak(n int) [][]byte {
	var held [][]byte
	for i := range n >> 20 {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = 1
		}
		held = append(held, b)
		if i%16 == 15 {
			// A heap profile shows what the last collection saw: one
			// taken while the set grows names this function too.
			runtime.GC()
		}
	}
	runtime.GC()
	return held
}

func resident(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := bytes.Fields(b)
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

func modified(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}
