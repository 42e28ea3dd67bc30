package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/iotest"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/lotse/lotse/internal/oci/ocitest"
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

// Follow hands each layer Unpack reads to its function as the layer is
// written: the stream is the layer's uncompressed bytes, read in pieces of
// any size, and the file holds them too once the stream ended; whether the
// diff ID is hashed or known. A layer put in place as its outline is not
// followed.
func TestFollowStreamsEachLayer(t *testing.T) {
	ctx := context.Background()
	img, err := random.Image(3*followStep+5, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, img = writeLayout(t, img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		i            int
		diffID       v1.Hash
		stream, file []byte
		err          error
	}
	m := ocitest.NewLayers()
	for _, known := range []string{"hashed", "known"} {
		out := make(chan got, len(layers))
		if _, err := Unpack(ctx, img, t.TempDir(), KnownDiffIDs(m), Follow(func(i int, diffID v1.Hash, r io.Reader, f *os.File) {
			defer f.Close()
			b, err := io.ReadAll(iotest.HalfReader(r))
			g := got{i: i, diffID: diffID, stream: b, err: err}
			if err == nil {
				g.file = make([]byte, len(b))
				_, g.err = f.ReadAt(g.file, 0)
			}
			out <- g
		})); err != nil {
			t.Fatal(err)
		}
		seen := map[int]bool{}
		for range layers {
			g := <-out
			if g.err != nil {
				t.Fatalf("%s: layer %d: %v", known, g.i, g.err)
			}
			rc, err := layers[g.i].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			want, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			d, _ := layers[g.i].DiffID()
			if g.diffID != d || !bytes.Equal(g.stream, want) || !bytes.Equal(g.file, want) {
				t.Fatalf("%s: layer %d (%s, want %s): streamed %d bytes, file %d, want %d", known, g.i, g.diffID, d, len(g.stream), len(g.file), len(want))
			}
			seen[g.i] = true
		}
		hashed := m.Remembered() // hashed and remembered, or known and not hashed
		if len(seen) != len(layers) || (known == "hashed") != (hashed == len(layers)) || (known == "known") != (hashed == 0) {
			t.Fatalf("%s: followed layers %v of %d, %d diff IDs hashed", known, seen, len(layers), hashed)
		}
	}

	// Outlined, the layers are not followed.
	u, err := Unpack(ctx, img, t.TempDir(), KnownDiffIDs(m), WithOutlines(m))
	if err != nil {
		t.Fatal(err)
	}
	u.WaitOutlines()
	m.Need(true, true, true)
	var followed atomic.Int32
	u, err = Unpack(ctx, img, t.TempDir(), KnownDiffIDs(m), WithOutlines(m), Follow(func(_ int, _ v1.Hash, r io.Reader, f *os.File) {
		followed.Add(1)
		io.Copy(io.Discard, r) //nolint:errcheck // not followed: never called
		f.Close()
	}))
	if err != nil {
		t.Fatal(err)
	}
	if followed.Load() != 0 || u.Outlines() != len(layers) {
		t.Fatalf("%d outlined layers followed (%d outlines)", followed.Load(), u.Outlines())
	}
}

// newFollowed is a follower of a new file with one stream, read to its end
// on a goroutine of its own: what it read, and how it ended, arrive on
// read.
func newFollowed(t *testing.T) (w *fileFollower, read <-chan streamRead) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "layer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w = &fileFollower{f: f}
	s := w.stream(f)
	c := make(chan streamRead, 1)
	go func() {
		b, err := io.ReadAll(s)
		c <- streamRead{b, err}
	}()
	return w, c
}

type streamRead struct {
	b   []byte
	err error
}

// A layer given up on ends its stream with an error, never with the end
// of a layer.
func TestFollowStreamGivenUp(t *testing.T) {
	w, read := newFollowed(t)
	if _, err := w.Write(make([]byte, 2*followStep)); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if r := <-read; !errors.Is(r.err, errGivenUp) {
		t.Fatalf("stream of a layer given up on ended with %v", r.err)
	}
}

// Without a hash follower (the diff ID known), Sum ends the streams and
// sums nothing.
func TestFollowWithoutHash(t *testing.T) {
	w, read := newFollowed(t)
	if _, err := w.Write([]byte("layer")); err != nil {
		t.Fatal(err)
	}
	if h, err := w.Sum(); h != nil || err != nil {
		t.Fatalf("Sum without a hash follower: %v, %v", h, err)
	}
	w.Stop()
	if r := <-read; string(r.b) != "layer" || r.err != nil {
		t.Fatalf("streamed %q, %v", r.b, r.err)
	}
}
