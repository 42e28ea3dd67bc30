package sbom

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/google/licensecheck"
)

// syft names the licenses in file contents (a jar's LICENSE, a Debian
// copyright file without License fields, the LICENSE beside a package.json
// without a license) with google/licensecheck. Its scanner compiles every
// license text licensecheck knows into one automaton: about half a second
// of one core and 300 MB of short-lived garbage. syft's API builds it in
// every process, before the first package is cataloged
// (syft.SetContextLicenseScanner), also for an image that holds no such
// file; syft's constructor that takes a scanning function is internal.
//
// lotse reaches that constructor by its link name and gives it a function
// that answers from the layer cache, keyed by the SHA-256 of the text and
// licensecheck's version, and builds licensecheck's scanner (the same
// built-in licenses syft uses) only on the first text the cache does not
// hold. Most license texts are the same few (Apache-2.0, MIT, BSD) in
// every release of an application, so a release whose cache has seen them
// builds no scanner. Building it means loading lotse's snapshot of the
// compiled automaton (licensecheck.go: 50 ms, 20 MB), or compiling it when
// the snapshot does not fit the licensecheck linked.
//
// syftScannerConfig and syftScanner mirror syft v1's
// internal/licenses.ScannerConfig and the Scanner interface value (two
// words, passed through unchanged). A syft that renames either function
// fails the link; TestLicenseScannerMatchesSyft checks on every test run
// that the scanner built through them finds what syft's own finds, with
// the threshold and the function given.

type syftScannerConfig struct {
	CoverageThreshold float64
	Scanner           func([]byte) licensecheck.Coverage
}

type syftScanner struct{ tab, data unsafe.Pointer }

//go:linkname syftNewScanner github.com/anchore/syft/internal/licenses.NewScanner
func syftNewScanner(c *syftScannerConfig) (syftScanner, error)

//go:linkname syftSetContextLicenseScanner github.com/anchore/syft/internal/licenses.SetContextLicenseScanner
func syftSetContextLicenseScanner(ctx context.Context, s syftScanner) context.Context

// licenseSchema is bumped when what a cached license result holds changes.
const licenseSchema = "1"

// licenseScanner answers syft's license scans: from cache when it holds
// the text's result, else with licensecheck's scanner, built once, on the
// first such text or ahead of it (prepare).
type licenseScanner struct {
	cache  Cache // nil: no cache
	prefix string
	// window is called with a channel that is closed when the scanner is
	// built, as compiling it starts (a command relaxes the collector then);
	// loading lotse's snapshot does not call it.
	window func(built <-chan struct{})

	once    sync.Once
	built   chan struct{}
	scanner *licensecheck.Scanner
	err     error

	builds, hits, scans atomic.Int64
	marked              atomic.Bool // seenKey written
	ahead               atomic.Bool // building ahead (Foresee)
}

func newLicenseScanner(cache Cache, window func(<-chan struct{})) *licenseScanner {
	return &licenseScanner{
		cache:  cache,
		prefix: "licensecheck/" + moduleVersion("github.com/google/licensecheck") + "/" + licenseSchema + "/",
		window: window,
		built:  make(chan struct{}),
	}
}

// seenKey marks a cache through which an image was cataloged: it holds
// the results of the license texts that image has.
func (l *licenseScanner) seenKey() string { return l.prefix + "seen" }

// expected says whether a scan will likely miss the cache: there is no
// cache, or no image was cataloged through it yet. A command then builds
// the scanner ahead (prepare), beside reading the image.
func (l *licenseScanner) expected() bool {
	if l.cache == nil {
		return true
	}
	_, ok := l.cache.Get(l.seenKey())
	return !ok
}

// cataloged records in the cache that an image was cataloged through it.
func (l *licenseScanner) cataloged() {
	if l.cache != nil && !l.marked.Swap(true) {
		l.cache.Put(l.seenKey(), []byte{1}) //nolint:errcheck // costs only a later build ahead of need
	}
}

// Foresee looks at the file names of a layer (an uncompressed tar) as it
// is unpacked, before the image is cataloged. Without a license cache, or
// with one no image was cataloged through yet, a layer with a file syft
// may scan for a license starts building syft's license scanner, beside
// reading the rest of the image: a file named as syft's license files are
// (LICENSE, COPYING, MIT-LICENSE.txt...), a Debian copyright file, or a
// Java archive (syft reads the license files packed in it). This only
// decides whether to build the scanner ahead: a scan it did not foresee
// (say, a license text in a package's metadata) builds it then. It is safe
// for concurrent use.
func (c *Cataloger) Foresee(layerTar string) {
	l := c.licenses
	if l.ahead.Load() || !l.expected() {
		return
	}
	f, err := os.Open(layerTar)
	if err != nil {
		return // the cataloging reports it
	}
	defer f.Close()
	tr := tar.NewReader(f) // skips file contents by seeking
	for {
		h, err := tr.Next()
		if err != nil {
			return
		}
		if mayScanLicense(h.Name) {
			if !l.ahead.Swap(true) {
				l.prepare()
			}
			return
		}
	}
}

// mayScanLicense says whether syft may scan the file at name for a
// license; see Foresee.
func mayScanLicense(name string) bool {
	base := strings.ToLower(path.Base(name))
	switch {
	case strings.Contains(base, "licen"), strings.HasPrefix(base, "copying"),
		base == "copyright", base == "al2.0", base == "lgpl2.1":
		return true
	}
	switch path.Ext(base) {
	case ".jar", ".war", ".ear", ".par", ".sar", ".nar", ".jpi", ".hpi", ".kar", ".lpkg":
		return true
	}
	return false
}

// prepare builds the scanner in the background.
func (l *licenseScanner) prepare() { go l.build() }

func (l *licenseScanner) build() {
	l.once.Do(func() {
		defer close(l.built)
		l.builds.Add(1)
		if s, err := loadLicensecheck(licensecheckSnapshot, moduleVersion("github.com/google/licensecheck")); err == nil {
			l.scanner = s
			return
		}
		// Compiling makes the garbage the window is for; loading does not.
		if l.window != nil {
			l.window(l.built)
		}
		l.scanner, l.err = licensecheck.NewScanner(licensecheck.BuiltinLicenses())
	})
}

// failed is the build's error, if the scanner was built and failed. syft
// cannot be told of it during a scan (its scanning function returns no
// error), so catalog asks afterwards and fails rather than write an SBOM
// without the licenses.
func (l *licenseScanner) failed() error {
	select {
	case <-l.built:
		if l.err != nil {
			return fmt.Errorf("license scanner: %w", l.err)
		}
	default:
	}
	return nil
}

// scan is the function syft's scanner calls with each text.
func (l *licenseScanner) scan(text []byte) licensecheck.Coverage {
	var key string
	if l.cache != nil {
		key = l.prefix + sha256Hex(text)
		if b, ok := l.cache.Get(key); ok {
			var c licensecheck.Coverage
			if err := json.Unmarshal(b, &c); err == nil && validCoverage(c, len(text)) {
				l.hits.Add(1)
				return c
			}
		}
	}
	l.build()
	if l.err != nil {
		return licensecheck.Coverage{}
	}
	l.scans.Add(1)
	c := l.scanner.Scan(text)
	if l.cache != nil {
		if b, err := json.Marshal(c); err == nil {
			l.cache.Put(key, b) //nolint:errcheck // a result not cached is only built again
		}
	}
	return c
}

// LicenseStats says how many license texts syft's license scanner was
// handed while an image was cataloged: answered from the layer cache, or
// scanned; and whether licensecheck's scanner was built (for a scan, or
// ahead of one).
type LicenseStats struct {
	Cached, Scanned int
	Built           bool
}

func (l *licenseScanner) stats() LicenseStats {
	return LicenseStats{Cached: int(l.hits.Load()), Scanned: int(l.scans.Load()), Built: l.builds.Load() > 0}
}

// validCoverage checks a cached result against the text it is for: syft
// slices the text with its offsets.
func validCoverage(c licensecheck.Coverage, n int) bool {
	for _, m := range c.Match {
		if m.Start < 0 || m.End < m.Start || m.End > n || m.ID == "" {
			return false
		}
	}
	return c.Percent >= 0 && c.Percent <= 100
}

// context is ctx carrying a syft license scanner that scans through l.
func (l *licenseScanner) context(coverage float64) (context.Context, error) {
	s, err := syftNewScanner(&syftScannerConfig{CoverageThreshold: coverage, Scanner: l.scan})
	if err != nil {
		return nil, err
	}
	return syftSetContextLicenseScanner(context.Background(), s), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
