// Package layercache keeps analysis results per image layer in a directory
// that CI jobs keep between runs (GitLab's cache:), so that a release whose
// base layers were analysed before analyses only its new layers.
//
// Entries are named by a key the caller derives from the layer (its diff or
// chain ID) and from the analyser and its version, so a new analyser never
// reads an old one's results. The directory is shared by concurrent jobs:
// an entry is written to a temporary file and renamed into place, so a
// reader sees a whole entry or none. Every entry carries its key and the
// SHA-256 of its content; an entry that does not match is removed and
// reported as missing, never returned. Trim bounds the directory's size,
// removing the entries used least recently first.
package layercache

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
)

// magic starts every entry; a format change bumps it.
const magic = "lotse-layercache 1"

// maxEntry bounds an entry's decompressed size (a layer's catalog is a few
// MiB): a planted entry cannot make a reader decompress without end.
const maxEntry = 256 << 20

// staleTemp is how old an unfinished temporary file must be before Trim
// removes it: a job that crashed while writing left it.
const staleTemp = time.Hour

// Cache is a directory of entries. A nil *Cache caches nothing.
type Cache struct {
	dir string
	max int64
}

// Open uses dir, created if missing, holding at most maxBytes of entries
// after Trim. maxBytes <= 0 returns a nil Cache: caching is off.
func Open(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes <= 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("layer cache: %w", err)
	}
	return &Cache{dir: dir, max: maxBytes}, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string {
	if c == nil {
		return ""
	}
	return c.dir
}

func (c *Cache) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(c.dir, h[:2], h)
}

// Get returns the entry of key. A missing, unreadable or corrupted entry is
// a miss; a corrupted one is removed so that it is computed again.
func (c *Cache) Get(key string) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	p := c.path(key)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, false
	}
	v, err := decode(b, key)
	if err != nil {
		os.Remove(p) //nolint:errcheck // recomputed and written again
		return nil, false
	}
	now := time.Now()
	os.Chtimes(p, now, now) //nolint:errcheck // only Trim's order depends on it
	return v, true
}

// Open returns a reader of the entry of key that checks the entry as it
// is read, for an entry too large to hold in memory twice: reading past
// its end returns an error, instead of io.EOF, when the entry is damaged
// (and removes it), so a reader that read to io.EOF read what was put.
func (c *Cache) Open(key string) (io.ReadCloser, bool) {
	if c == nil {
		return nil, false
	}
	p := c.path(key)
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	r, err := entryReader(f, key)
	if err != nil {
		f.Close()
		os.Remove(p) //nolint:errcheck // recomputed and written again
		return nil, false
	}
	now := time.Now()
	os.Chtimes(p, now, now) //nolint:errcheck // only Trim's order depends on it
	return &openEntry{r: r, f: f, path: p}, true
}

// openEntry is an entry read from its file; a damaged one is removed.
type openEntry struct {
	r    io.Reader
	f    *os.File
	path string
}

func (e *openEntry) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if errors.Is(err, errCorrupt) {
		os.Remove(e.path) //nolint:errcheck // recomputed and written again
		err = fmt.Errorf("layer cache: %w", err)
	}
	return n, err
}

func (e *openEntry) Close() error { return e.f.Close() }

// Has says whether an entry of key is kept, without reading it: Get may
// still find it corrupted.
func (c *Cache) Has(key string) bool {
	if c == nil {
		return false
	}
	_, err := os.Stat(c.path(key))
	return err == nil
}

// Put stores value as the entry of key, replacing any entry of key.
func (c *Cache) Put(key string, value []byte) error {
	if len(value) > maxEntry {
		return fmt.Errorf("layer cache: entry %s is %d bytes, more than %d", key, len(value), maxEntry)
	}
	return c.Write(key, func(w io.Writer) error {
		_, err := w.Write(value)
		return err
	})
}

// Write stores what write writes to its writer as the entry of key,
// replacing any entry of key: a value streams into the cache instead of
// being held whole in memory first. When write fails, or writes more than
// an entry may hold, there is no new entry and Write returns the error.
func (c *Cache) Write(key string, write func(io.Writer) error) error {
	if c == nil {
		return nil
	}
	if strings.ContainsRune(key, '\n') {
		return fmt.Errorf("layer cache: key %q has a newline", key)
	}
	p := c.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	sumAt, sum, err := encode(f, key, write)
	if err == nil {
		_, err = f.WriteAt([]byte(sum), sumAt)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name()) //nolint:errcheck // best effort
		return fmt.Errorf("layer cache: write %s: %w", key, err)
	}
	return nil
}

// sumSize is the length of the SHA-256 in an entry's header, in hex.
const sumSize = 2 * sha256.Size

// encode writes the entry of key to w: the header, then the value write
// writes, compressed. The header leaves room for the value's SHA-256, which
// is known only at the end: encode returns it, and the offset where it
// belongs.
func encode(w io.Writer, key string, write func(io.Writer) error) (sumAt int64, sum string, err error) {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s\n%s\n", magic, key)
	sumAt = int64(bw.Buffered())
	fmt.Fprintf(bw, "%s\n", strings.Repeat("0", sumSize))
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return 0, "", err
	}
	vw := &valueWriter{w: zw, h: sha256.New()}
	if err := write(vw); err != nil {
		return 0, "", err
	}
	if vw.err != nil { // write dropped the error
		return 0, "", vw.err
	}
	if err := zw.Close(); err != nil {
		return 0, "", err
	}
	if err := bw.Flush(); err != nil {
		return 0, "", err
	}
	return sumAt, hex.EncodeToString(vw.h.Sum(nil)), nil
}

// valueWriter hashes and counts a value on its way to the compressor,
// and refuses it past maxEntry.
type valueWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (v *valueWriter) Write(b []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.n+int64(len(b)) > maxEntry {
		v.err = fmt.Errorf("entry is more than %d bytes", maxEntry)
		return 0, v.err
	}
	v.n += int64(len(b))
	v.h.Write(b)
	n, err := v.w.Write(b)
	v.err = err
	return n, err
}

var errCorrupt = errors.New("corrupted entry")

func decode(b []byte, key string) ([]byte, error) {
	r, err := entryReader(bytes.NewReader(b), key)
	if err != nil {
		return nil, err
	}
	var v bytes.Buffer
	v.Grow(sizeHint(b) + bytes.MinRead)
	if _, err := v.ReadFrom(r); err != nil {
		return nil, err
	}
	return v.Bytes(), nil
}

// sizeHint is the size of the value in an encoded entry as its gzip
// stream's trailer states it (ISIZE, the size modulo 2^32; a value is
// smaller), so that decode reads it into one buffer instead of growing one
// (a layer's catalog is 10 MB and more). A damaged entry may state any
// size: the hint is bounded by what its length can decompress to.
func sizeHint(entry []byte) int {
	if len(entry) < 4 {
		return 0
	}
	n := int64(binary.LittleEndian.Uint32(entry[len(entry)-4:]))
	return int(min(n, maxEntry, int64(len(entry))*1032))
}

// entryReader reads the value of an encoded entry of key from r, checking
// it as it goes: past its end it returns errCorrupt, instead of io.EOF,
// when the value is not the one put (its size or SHA-256).
func entryReader(r io.Reader, key string) (io.Reader, error) {
	br := bufio.NewReader(r)
	var head [3]string
	for i := range head {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, errCorrupt
		}
		head[i] = strings.TrimSuffix(line, "\n")
	}
	if head[0] != magic || head[1] != key {
		return nil, errCorrupt
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, errCorrupt
	}
	return &checkedReader{r: io.LimitReader(zr, maxEntry+1), sum: head[2], h: sha256.New()}, nil
}

// checkedReader reads a value and checks its size and SHA-256 at its end.
type checkedReader struct {
	r   io.Reader
	sum string
	h   hash.Hash
	n   int64
}

func (r *checkedReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.h.Write(b[:n])
	r.n += int64(n)
	switch {
	case r.n > maxEntry:
		return n, errCorrupt
	case errors.Is(err, io.EOF) && hex.EncodeToString(r.h.Sum(nil)) != r.sum:
		return n, errCorrupt
	case err != nil && !errors.Is(err, io.EOF):
		return n, errCorrupt
	}
	return n, err
}

// Trim removes the entries used least recently until the cache holds at
// most its maximum, and temporary files that crashed jobs left behind. It
// returns the bytes the cache holds afterwards.
func (c *Cache) Trim() (int64, error) {
	if c == nil {
		return 0, nil
	}
	type entry struct {
		path string
		size int64
		used time.Time
	}
	var (
		entries []entry
		total   int64
	)
	now := time.Now()
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed by a concurrent Trim
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil //nolint:nilerr // removed meanwhile
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			if now.Sub(info.ModTime()) > staleTemp {
				os.Remove(p) //nolint:errcheck // best effort
			}
			return nil
		}
		entries = append(entries, entry{p, info.Size(), info.ModTime()})
		total += info.Size()
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("layer cache: %w", err)
	}
	slices.SortFunc(entries, func(a, b entry) int { return a.used.Compare(b.used) })
	for _, e := range entries {
		if total <= c.max {
			break
		}
		if err := os.Remove(e.path); err == nil || errors.Is(err, fs.ErrNotExist) {
			total -= e.size
		}
	}
	return total, nil
}
