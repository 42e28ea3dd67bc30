package sbom

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/pkg"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/test/fixture"
)

// licenseTexts are texts syft hands its license scanner: a whole license,
// two licenses, a license inside other text, and text that is none.
var licenseTexts = map[string]string{
	"mit":     fixture.MITLicense,
	"two":     fixture.MITLicense + "\n\n" + strings.Replace(fixture.MITLicense, "MIT License", "", 1),
	"partial": "This package is free software.\n\n" + fixture.MITLicense + "\nSee also the docs.\n",
	"none":    "Copyright 2024 Example Corp. All rights reserved. Not for distribution.\n",
	"empty":   "",
}

// licensesOf is what syft makes of text with the license scanner in ctx.
func licensesOf(ctx context.Context, text string) []pkg.License {
	loc := file.NewLocation("/usr/share/doc/fixture/copyright")
	return pkg.NewLicensesFromReadCloserWithContext(ctx, file.NewLocationReadCloser(loc, io.NopCloser(strings.NewReader(text))))
}

func sameLicenses(t *testing.T, name string, got, want []pkg.License) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d licenses %+v, want %d %+v", name, len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Value != w.Value || g.SPDXExpression != w.SPDXExpression || g.Type != w.Type || g.Contents != w.Contents {
			t.Errorf("%s: license %d is %q (%q, %s), want %q (%q, %s)", name, i, g.Value, g.SPDXExpression, g.Type, w.Value, w.SPDXExpression, w.Type)
		}
	}
}

// The scanner lotse hands syft through syft's internal constructor finds
// what syft's own scanner finds, with and without the cache, and the
// cache answers a text seen before without building the scanner. This
// also checks the mirrored declarations in licenses.go against the syft
// linked: the threshold and the function must arrive.
func TestLicenseScannerMatchesSyft(t *testing.T) {
	cfg := syft.DefaultCreateSBOMConfig().Licenses
	ref, err := syft.SetContextLicenseScanner(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := layercache.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plain := newLicenseScanner(nil, nil)
	first := newLicenseScanner(lc, nil)
	second := newLicenseScanner(lc, nil)
	ctxs := map[string]context.Context{}
	for name, l := range map[string]*licenseScanner{"no cache": plain, "cache, first": first, "cache, second": second} {
		ctx, err := l.context(cfg.Coverage)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ctxs[name] = ctx
	}
	for name, text := range licenseTexts {
		want := licensesOf(ref, text)
		if name == "mit" && (len(want) != 1 || want[0].SPDXExpression != "MIT") {
			t.Fatalf("syft's scanner: %+v, want MIT", want)
		}
		for _, c := range []string{"no cache", "cache, first", "cache, second"} {
			sameLicenses(t, name+", "+c, licensesOf(ctxs[c], text), want)
		}
	}
	if plain.builds.Load() != 1 || first.builds.Load() != 1 {
		t.Errorf("builds without cache %d, filling it %d; want 1 each", plain.builds.Load(), first.builds.Load())
	}
	if second.builds.Load() != 0 || second.hits.Load() != int64(len(licenseTexts)) {
		t.Errorf("from the cache: %d builds, %d hits; want 0 and %d", second.builds.Load(), second.hits.Load(), len(licenseTexts))
	}

	// Below the threshold a match is not a license: the threshold given
	// reaches syft's scanner.
	strict := newLicenseScanner(nil, nil)
	ctx, err := strict.context(100)
	if err != nil {
		t.Fatal(err)
	}
	if got := licensesOf(ctx, licenseTexts["partial"]); len(got) != 1 || got[0].SPDXExpression != "" {
		t.Errorf("coverage 100 on a partial text: %+v, want its content hash", got)
	}
}

// A cached result is checked, not trusted: an entry whose offsets or
// percentage do not fit the text, or that is not a result, is computed
// again.
func TestLicenseCacheIsChecked(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cfg := syft.DefaultCreateSBOMConfig().Licenses
	ref, err := syft.SetContextLicenseScanner(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := licensesOf(ref, fixture.MITLicense)
	for name, entry := range map[string]string{
		"not JSON":            "{",
		"end past the text":   `{"Percent":100,"Match":[{"ID":"MIT","Start":0,"End":999999}]}`,
		"negative start":      `{"Percent":100,"Match":[{"ID":"MIT","Start":-1,"End":10}]}`,
		"no license name":     `{"Percent":100,"Match":[{"ID":"","Start":0,"End":10}]}`,
		"percentage over 100": `{"Percent":1000,"Match":[]}`,
	} {
		l := newLicenseScanner(lc, nil)
		key := l.prefix + sha256Hex([]byte(fixture.MITLicense))
		if err := lc.Put(key, []byte(entry)); err != nil {
			t.Fatal(err)
		}
		ctx, err := l.context(cfg.Coverage)
		if err != nil {
			t.Fatal(err)
		}
		sameLicenses(t, name, licensesOf(ctx, fixture.MITLicense), want)
		if l.builds.Load() != 1 || l.hits.Load() != 0 {
			t.Errorf("%s: %d builds, %d hits; want the text scanned again", name, l.builds.Load(), l.hits.Load())
		}
		if b, ok := lc.Get(key); !ok || string(b) == entry {
			t.Errorf("%s: entry not replaced by the result: %q", name, b)
		}
	}
}

func TestMayScanLicense(t *testing.T) {
	for name, want := range map[string]bool{
		"app/node_modules/a/LICENSE":            true,
		"usr/share/doc/libc6/copyright":         true,
		"src/github.com/x/y/LICENCE.md":         true,
		"opt/COPYING.txt":                       true,
		"srv/lib/MIT-LICENSE":                   true,
		"opt/app/app.jar":                       true,
		"opt/app/APP.WAR":                       true,
		"usr/share/jenkins/plugins/git.hpi":     true,
		"usr/lib/python3/dist-packages/x.py":    false,
		"var/lib/dpkg/status":                   false,
		"usr/share/doc/libc6/changelog.gz":      false,
		"app/node_modules/a/package.json":       false,
		"usr/share/doc/libc6/copyright-notes/x": false,
	} {
		if got := mayScanLicense(name); got != want {
			t.Errorf("mayScanLicense(%q) = %v, want %v", name, got, want)
		}
	}
}

// layerTar writes files as an uncompressed layer file.
func layerTar(t *testing.T, files ...fixture.File) string {
	t.Helper()
	l, err := fixture.Layer(files...)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Foresee builds the scanner ahead for a layer with a file syft may scan,
// unless the cache has been through a cataloging; a layer without such a
// file builds nothing.
func TestForesee(t *testing.T) {
	plain := layerTar(t, fixture.DebianFiles(fixture.DebianPackages)...)
	licensed := layerTar(t, fixture.File{Path: "app/node_modules/a/package.json", Data: []byte(`{"name":"a","version":"1.0.0"}`)},
		fixture.File{Path: "app/node_modules/a/LICENSE", Data: []byte(fixture.MITLicense)})
	built := func(c *Cataloger) bool {
		select {
		case <-c.licenses.built:
			return true
		case <-time.After(10 * time.Second):
			return false
		}
	}

	c := NewCataloger(Tool{Name: "lotse", Version: "test"})
	c.Foresee(plain)
	c.Foresee(filepath.Join(t.TempDir(), "missing.tar"))
	if c.licenses.ahead.Load() {
		t.Error("a layer without license files builds the scanner ahead")
	}
	c.Foresee(licensed)
	c.Foresee(licensed)
	if !built(c) || c.licenses.builds.Load() != 1 {
		t.Errorf("a layer with a LICENSE: built %d times, want once", c.licenses.builds.Load())
	}

	lc, err := layercache.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	warm := NewCataloger(Tool{Name: "lotse", Version: "test"}, WithLicenseCache(lc))
	warm.licenses.cataloged()
	warm = NewCataloger(Tool{Name: "lotse", Version: "test"}, WithLicenseCache(lc))
	warm.Foresee(licensed)
	if warm.licenses.ahead.Load() {
		t.Error("a cache an image was cataloged through: the scanner was built ahead")
	}
}
