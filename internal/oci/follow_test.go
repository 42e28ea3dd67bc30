package oci

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// A fileFollower's sum is the SHA-256 of the file written through it,
// whether the writes are smaller or larger than its step, and whether it
// hears of them before or after they are all written.
func TestFileFollowerHashesWhatWasWritten(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name   string
		size   int
		chunks int
	}{
		{"empty", 0, 1},
		{"one byte", 1, 1},
		{"below a step", followStep - 1, 3},
		{"a step", followStep, 1},
		{"steps in small writes", 3*followStep + 17, 5000},
		{"steps in large writes", 5*followStep + 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			for range 20 { // Sum before the follower starts, and after
				f, err := os.Create(filepath.Join(t.TempDir(), "layer"))
				if err != nil {
					t.Fatal(err)
				}
				w := followFile(f)
				rest := data
				step := max(1, len(data)/tc.chunks)
				for len(rest) > 0 {
					n := min(step, len(rest))
					if _, err := w.Write(rest[:n]); err != nil {
						t.Fatal(err)
					}
					rest = rest[n:]
				}
				h, err := w.Sum()
				if err != nil {
					t.Fatal(err)
				}
				w.Stop()
				want := sha256.Sum256(data)
				if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
					t.Fatalf("sum %x, want %x", got, want)
				}
				f.Close()
			}
		})
	}
}

// A file given up on stops its follower, written or not.
func TestFileFollowerStops(t *testing.T) {
	for _, size := range []int{0, 10, 3 * followStep} {
		f, err := os.Create(filepath.Join(t.TempDir(), "layer"))
		if err != nil {
			t.Fatal(err)
		}
		w := followFile(f)
		if _, err := w.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		w.Stop()
		w.Stop()
		f.Close()
	}
}

// What cannot be read back is an error, not a sum of less.
func TestFileFollowerReadBackFails(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "layer"))
	if err != nil {
		t.Fatal(err)
	}
	w := followFile(f)
	if _, err := w.Write(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4); err != nil { // as if the disk lost it
		t.Fatal(err)
	}
	if _, err := w.Sum(); err == nil {
		t.Fatal("a file shorter than written was summed")
	}
	f.Close()
}
