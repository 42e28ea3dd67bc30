package layercache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

func open(t testing.TB, max int64) *Cache {
	t.Helper()
	c, err := Open(t.TempDir(), max)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := open(t, 1<<20)
	if _, ok := c.Get("trivy/sha256:a"); ok || c.Has("trivy/sha256:a") {
		t.Fatal("hit in an empty cache")
	}
	v := bytes.Repeat([]byte(`{"packages":[]}`), 100)
	if err := c.Put("trivy/sha256:a", v); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Get("trivy/sha256:a")
	if !ok || !bytes.Equal(got, v) {
		t.Fatalf("Get = %q, %v", got, ok)
	}
	if !c.Has("trivy/sha256:a") {
		t.Fatal("Has misses an entry Get finds")
	}
	rc, ok := c.Open("trivy/sha256:a")
	if !ok {
		t.Fatal("Open misses an entry Get finds")
	}
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("Open read %d bytes, %v", len(got), err)
	}
	rc.Close()
	if _, ok := c.Open("syft/sha256:a"); ok {
		t.Fatal("Open of another key hit")
	}
	if _, ok := c.Get("syft/sha256:a"); ok || c.Has("syft/sha256:a") {
		t.Fatal("another key hit")
	}
	// Replacing an entry.
	if err := c.Put("trivy/sha256:a", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get("trivy/sha256:a"); string(got) != "new" {
		t.Fatalf("after replace: %q", got)
	}
	if err := c.Put("a\nb", nil); err == nil {
		t.Fatal("a key with a newline was accepted")
	}
}

func TestCorruptedEntriesAreRecomputed(t *testing.T) {
	if got := sizeHint(entry(t, "k", make([]byte, 5000))); got != 5000 {
		t.Fatalf("sizeHint of an entry of 5000 bytes = %d", got)
	}
	for name, damage := range map[string]func([]byte) []byte{
		"flipped byte": func(b []byte) []byte { b[len(b)-5] ^= 0xff; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)/2] },
		"empty":        func([]byte) []byte { return nil },
		"other key":    func(b []byte) []byte { return bytes.Replace(b, []byte("k1"), []byte("k2"), 1) },
		// gzip's trailer states the size Get reads the value into.
		"size stated larger":  func(b []byte) []byte { binary.LittleEndian.PutUint32(b[len(b)-4:], 1<<31); return b },
		"size stated smaller": func(b []byte) []byte { binary.LittleEndian.PutUint32(b[len(b)-4:], 3); return b },
		"other magic":         func(b []byte) []byte { return bytes.Replace(b, []byte(magic), []byte("lotse-layercache 0"), 1) },
		"wrong sum": func(b []byte) []byte {
			lines := bytes.SplitN(b, []byte("\n"), 4)
			lines[2] = bytes.Repeat([]byte("0"), 64)
			return bytes.Join(lines, []byte("\n"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := open(t, 1<<20)
			if err := c.Put("k1", []byte("the layer's packages")); err != nil {
				t.Fatal(err)
			}
			p := c.path("k1")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, damage(bytes.Clone(b)), 0o600); err != nil {
				t.Fatal(err)
			}
			// Open, for entries read as a stream, fails before io.EOF.
			if rc, ok := c.Open("k1"); ok {
				v, err := io.ReadAll(rc)
				rc.Close()
				if err == nil {
					t.Fatalf("a damaged entry was read to its end through Open: %q", v)
				}
			}
			if err := os.WriteFile(p, damage(bytes.Clone(b)), 0o600); err != nil {
				t.Fatal(err)
			}
			if v, ok := c.Get("k1"); ok {
				t.Fatalf("a damaged entry was returned: %q", v)
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("the damaged entry is still there: %v", err)
			}
			if err := c.Put("k1", []byte("again")); err != nil {
				t.Fatal(err)
			}
			if v, ok := c.Get("k1"); !ok || string(v) != "again" {
				t.Fatalf("recomputed entry: %q %v", v, ok)
			}
		})
	}
}

func TestTrimRemovesLeastRecentlyUsed(t *testing.T) {
	c := open(t, 1)
	val := bytes.Repeat([]byte{'x'}, 1000) // gzip makes each entry ~100 bytes
	old := time.Now().Add(-time.Hour)
	for i := range 5 {
		k := fmt.Sprint("k", i)
		if err := c.Put(k, val); err != nil {
			t.Fatal(err)
		}
		at := old.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(c.path(k), at, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := c.Get("k0"); !ok { // k0 is now the most recently used
		t.Fatal("k0 missing")
	}
	info, err := os.Stat(c.path("k0"))
	if err != nil {
		t.Fatal(err)
	}
	c.max = 2 * info.Size()
	// A temporary file a crashed job left an hour ago, and one being written.
	stale := filepath.Join(c.dir, "00", ".tmp-1")
	fresh := filepath.Join(c.dir, "00", ".tmp-2")
	os.MkdirAll(filepath.Dir(stale), 0o700)
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Chtimes(stale, old.Add(-time.Hour), old.Add(-time.Hour))
	total, err := c.Trim()
	if err != nil {
		t.Fatal(err)
	}
	if total > c.max {
		t.Fatalf("Trim left %d bytes, max %d", total, c.max)
	}
	for k, want := range map[string]bool{"k0": true, "k4": true, "k1": false, "k2": false, "k3": false} {
		if _, ok := c.Get(k); ok != want {
			t.Errorf("after Trim: %s present %v, want %v", k, ok, want)
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a temporary file being written was removed: %v", err)
	}
}

// Jobs sharing the cache: readers see a whole entry or none while writers
// replace it and Trim runs.
func TestConcurrentJobs(t *testing.T) {
	dir := t.TempDir()
	vals := [][]byte{bytes.Repeat([]byte("a"), 5000), bytes.Repeat([]byte("b"), 7000)}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for j := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Open(dir, 1<<20) // each job opens the directory itself
			if err != nil {
				errs <- err
				return
			}
			for i := range 50 {
				if err := c.Put("shared", vals[(i+j)%2]); err != nil {
					errs <- err
				}
				if v, ok := c.Get("shared"); ok && !bytes.Equal(v, vals[0]) && !bytes.Equal(v, vals[1]) {
					errs <- fmt.Errorf("read a mixed entry of %d bytes", len(v))
				}
				if i%10 == 0 {
					if _, err := c.Trim(); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNilCacheCachesNothing(t *testing.T) {
	c, err := Open(t.TempDir(), 0)
	if err != nil || c != nil {
		t.Fatalf("Open with no size = %v, %v", c, err)
	}
	if err := c.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("k"); ok || c.Has("k") {
		t.Fatal("nil cache hit")
	}
	if n, err := c.Trim(); n != 0 || err != nil {
		t.Fatal(n, err)
	}
}

// entry is the encoding of value as the entry of key, as Write leaves it.
func entry(t testing.TB, key string, value []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	sumAt, sum, err := encode(&b, key, func(w io.Writer) error {
		_, err := w.Write(value)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	copy(b.Bytes()[sumAt:], sum)
	return b.Bytes()
}

// FuzzDecode: whatever is on disk, Get returns only what was put under
// that key.
func FuzzDecode(f *testing.F) {
	f.Add(entry(f, "k", []byte("value")))
	f.Add([]byte(magic + "\nk\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decode(data, "k")
		if err != nil {
			return
		}
		if v2, err := decode(entry(t, "k", v), "k"); err != nil || !bytes.Equal(v, v2) {
			t.Fatalf("decoded %q does not round-trip", v)
		}
	})
}

// A planted entry that decompresses without end is refused, not read.
func TestEntryTooLarge(t *testing.T) {
	c := open(t, 1<<30)
	big := make([]byte, maxEntry+1) // zeros: gzip makes it small on disk
	// Planted as a hostile job would write it: encode refuses it.
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nk\n%x\n", magic, sha256.Sum256(big))
	zw := gzip.NewWriter(&b)
	zw.Write(big)
	zw.Close()
	if err := os.MkdirAll(filepath.Dir(c.path("k")), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.path("k"), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("an entry over the bound was read")
	}
	if err := c.Put("k", big); err == nil {
		t.Fatal("an entry over the bound was written")
	}
	// Streamed, the bound holds too, and nothing is left of the entry.
	err := c.Write("k2", func(w io.Writer) error {
		for range maxEntry/(1<<20) + 1 {
			if _, err := w.Write(big[:1<<20]); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || c.Has("k2") {
		t.Fatalf("Write over the bound = %v, entry kept: %v", err, c.Has("k2"))
	}
	assertNoTemp(t, c)
}

// Write streams a value into the cache: what it wrote is the entry; when
// it fails, even after writing, there is no entry and no temporary file,
// and the entry it would have replaced is kept.
func TestWriteStreams(t *testing.T) {
	c := open(t, 1<<30)
	var want bytes.Buffer
	err := c.Write("k", func(w io.Writer) error {
		for i := range 10000 {
			line := fmt.Sprintf("{\"file\":\"/usr/share/doc/%d/copyright\"}\n", i)
			want.WriteString(line)
			if _, err := io.WriteString(w, line); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Get("k"); !ok || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("Get after Write: %d bytes, %v; want %d bytes", len(got), ok, want.Len())
	}
	failed := errors.New("the encoder failed")
	err = c.Write("k", func(w io.Writer) error {
		io.WriteString(w, "half a document")
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Write = %v, want the writer's error", err)
	}
	if got, ok := c.Get("k"); !ok || !bytes.Equal(got, want.Bytes()) {
		t.Fatal("a failed Write replaced the entry")
	}
	if err := c.Write("k3", func(io.Writer) error { return failed }); err == nil || c.Has("k3") {
		t.Fatalf("failed Write of a new key = %v, entry kept: %v", err, c.Has("k3"))
	}
	assertNoTemp(t, c)
}

func assertNoTemp(t *testing.T, c *Cache) {
	t.Helper()
	tmps, err := filepath.Glob(filepath.Join(c.Dir(), "*", ".tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tmps) > 0 {
		t.Fatalf("temporary files left: %v", tmps)
	}
}

// BenchmarkGet reads back a layer's catalog of the size a 10,000-file
// Debian layer has (11 MB of syft JSON).
func BenchmarkGet(b *testing.B) {
	c := open(b, 1<<30)
	var v bytes.Buffer
	for i := 0; v.Len() < 11<<20; i++ {
		fmt.Fprintf(&v, `{"id":"%016x","location":{"path":"/usr/share/doc/pkg%d/copyright","layerID":"sha256:%064x"},"digests":[{"algorithm":"sha256","value":"%064x"}]},`, i, i, i, i*7)
	}
	if err := c.Put("k", v.Bytes()); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(v.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get("k"); !ok {
			b.Fatal("miss")
		}
	}
}
