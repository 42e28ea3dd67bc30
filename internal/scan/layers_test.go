package scan

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/internal/vuln"
	"github.com/lotse/lotse/test/fixture"
)

func findingKeys(r *Result) []string {
	var out []string
	for _, f := range r.Report.Findings {
		out = append(out, f.ID+" "+f.Package+"@"+f.InstalledVersion+" "+f.Path)
	}
	return out
}

// A layer analysed once is read from the layer cache in the next scans,
// with the same findings; damaged entries are analysed again.
func TestImageLayerCache(t *testing.T) {
	java, err := fixture.JavaImage() // Debian + a layer of jars
	if err != nil {
		t.Fatal(err)
	}
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	s := openScanner(t)
	ctx := context.Background()
	scanWith := func(img v1.Image, lc Cache) *Result {
		t.Helper()
		r, err := s.Image(ctx, img, "registry.example.com/team/app:1", Options{Layers: lc})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	want := findingKeys(scanWith(java, nil))
	if !slices.ContainsFunc(want, func(k string) bool { return k[:len("CVE-2021-44228")] == "CVE-2021-44228" }) {
		t.Fatalf("the Java image has no log4j finding: %q", want)
	}
	for i, wantStats := range []LayerStats{{Analysed: 2}, {Cached: 2}} {
		r := scanWith(java, lc)
		if r.Layers != wantStats {
			t.Errorf("scan %d: %+v, want %+v", i+1, r.Layers, wantStats)
		}
		if got := findingKeys(r); !slices.Equal(got, want) {
			t.Errorf("scan %d:\n got %q\nwant %q", i+1, got, want)
		}
	}

	// The next release: a new top layer; the two below come from the cache.
	jar, err := fixture.LibraryJar(fixture.Log4jCore)
	if err != nil {
		t.Fatal(err)
	}
	top, err := fixture.Layer(fixture.File{Path: "srv/again.jar", Data: jar})
	if err != nil {
		t.Fatal(err)
	}
	next, err := mutate.AppendLayers(java, top)
	if err != nil {
		t.Fatal(err)
	}
	r := scanWith(next, lc)
	if r.Layers != (LayerStats{Cached: 2, Analysed: 1}) {
		t.Errorf("next release: %+v", r.Layers)
	}
	if got, want := findingKeys(r), findingKeys(scanWith(next, nil)); !slices.Equal(got, want) {
		t.Errorf("next release:\n got %q\nwant %q", got, want)
	}
	if !slices.ContainsFunc(r.Report.Findings, func(f vuln.Finding) bool { return f.Path == "srv/again.jar" }) {
		t.Errorf("the new layer's jar was not scanned: %q", findingKeys(r))
	}

	// Damaged entries are analysed again, never trusted.
	filepath.Walk(lc.Dir(), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			os.WriteFile(p, []byte("lotse-layercache 1\nnot json"), 0o600)
		}
		return nil
	})
	r = scanWith(java, lc)
	if r.Layers != (LayerStats{Analysed: 2}) {
		t.Errorf("after damage: %+v", r.Layers)
	}
	if got := findingKeys(r); !slices.Equal(got, want) {
		t.Errorf("after damage:\n got %q\nwant %q", got, want)
	}
}

// trivy names jars through the Java DB while it analyses a layer: a layer
// analysed without the Java DB is analysed again once there is one.
func TestImageLayerCacheFollowsTheJavaDB(t *testing.T) {
	java, err := fixture.JavaImage()
	if err != nil {
		t.Fatal(err)
	}
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	noJava := t.TempDir()
	if err := fixture.WriteVulnDB(noJava, time.Now()); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, DB{CacheDir: noJava, Offline: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	without, err := s.Image(ctx, java, "app", Options{Layers: lc})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	with, err := openScanner(t).Image(ctx, java, "app", Options{Layers: lc})
	if err != nil {
		t.Fatal(err)
	}
	if with.Layers != (LayerStats{Analysed: 2}) {
		t.Errorf("with the Java DB: %+v, want every layer analysed again", with.Layers)
	}
	has := func(r *Result) bool {
		return slices.ContainsFunc(r.Report.Findings, func(f vuln.Finding) bool { return f.Path == fixture.SHA1JarPath })
	}
	if has(without) || !has(with) {
		t.Errorf("the jar only the Java DB names: found without it %v, with it %v", has(without), has(with))
	}
}
