package sbom

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/anchore/syft/syft"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/test/fixture"
)

// layeredImage is an application image of four layers: Debian, Java
// archives, an apt layer that rewrites dpkg's status (one package more),
// deletes a jar and changes os-release (or not), and the language
// ecosystems' files on top.
func layeredImage(t *testing.T, osVersion string, top ...fixture.File) v1.Image {
	t.Helper()
	base, err := fixture.Layer(fixture.DebianFiles(fixture.DebianPackages)...)
	if err != nil {
		t.Fatal(err)
	}
	jars, err := fixture.JavaFiles()
	if err != nil {
		t.Fatal(err)
	}
	java, err := fixture.Layer(jars...)
	if err != nil {
		t.Fatal(err)
	}
	apt := fixture.DebianFiles(append(slices.Clone(fixture.DebianPackages), fixture.DebPackage{Name: "curl", Version: "7.88.1-10+deb12u5"}))
	for i, f := range apt {
		switch f.Path {
		case "etc/os-release":
			apt[i].Data = bytes.Replace(f.Data, []byte(`VERSION_ID="12"`), []byte(`VERSION_ID="`+osVersion+`"`), 1)
		case "etc/debian_version":
			if osVersion != "12" {
				apt[i].Data = []byte(osVersion + ".1\n")
			}
		}
	}
	dir, base1 := filepath.Split(fixture.Log4jJarPath)
	apt = append(apt, fixture.File{Path: dir + ".wh." + base1})
	aptLayer, err := fixture.Layer(apt...)
	if err != nil {
		t.Fatal(err)
	}
	lang, err := fixture.LangImage()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := lang.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layers := []v1.Layer{base, java, aptLayer, ls[len(ls)-1]}
	if len(top) > 0 {
		l, err := fixture.Layer(top...)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := fixture.Image(layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// cdx is the CycloneDX document without what differs between any two runs.
func cdx(t *testing.T, s *SBOM) string {
	t.Helper()
	b, err := s.Bytes(CycloneDXJSON)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "serialNumber")
	delete(doc["metadata"].(map[string]any), "timestamp")
	out, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func catalog(t *testing.T, img v1.Image, lc Cache) *SBOM {
	t.Helper()
	c := NewCataloger(Tool{Name: "lotse", Version: "test"})
	defer c.Close()
	s, err := c.Generate(context.Background(), img, "registry.example.com/team/app:1.0", t.TempDir(), lc)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s
}

// The image cataloged one layer at a time, through the cache, is the
// image cataloged whole: the same CycloneDX document.
func TestLayersCatalogLikeTheWholeImage(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	img := layeredImage(t, "12")
	whole := catalog(t, img, nil)
	for _, p := range whole.Packages() {
		if p.Name == "log4j-core" {
			t.Fatalf("the whole image still lists the deleted jar: %v", p)
		}
	}
	if !slices.ContainsFunc(whole.Packages(), func(p Package) bool { return p.Name == "curl" }) {
		t.Fatal("the whole image misses the apt layer's package")
	}
	want := cdx(t, whole)

	cold := catalog(t, img, lc)
	if got := cold.Layers(); got != (LayerStats{Cataloged: 4}) {
		t.Errorf("cold: %+v", got)
	}
	if got := cdx(t, cold); got != want {
		t.Fatalf("cold, by layer:\n%s\nwhole:\n%s", got, want)
	}
	warm := catalog(t, img, lc)
	if got := warm.Layers(); got != (LayerStats{Cached: 4}) {
		t.Errorf("warm: %+v", got)
	}
	if got := cdx(t, warm); got != want {
		t.Fatalf("warm, from the cache:\n%s\nwhole:\n%s", got, want)
	}

	// The next release: only a new top layer is cataloged.
	jar, err := fixture.LibraryJar(fixture.Maven{Group: "org.example", Artifact: "next", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	next := layeredImage(t, "12", fixture.File{Path: "opt/lib/next-1.0.0.jar", Data: jar})
	nextWhole := cdx(t, catalog(t, next, nil))
	s := catalog(t, next, lc)
	if got := s.Layers(); got != (LayerStats{Cached: 4, Cataloged: 1}) {
		t.Errorf("next release: %+v", got)
	}
	if got := cdx(t, s); got != nextWhole {
		t.Fatalf("next release, by layer:\n%s\nwhole:\n%s", got, nextWhole)
	}

	// Damaged entries are cataloged again, never used.
	filepath.Walk(lc.Dir(), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			os.WriteFile(p, []byte("lotse-layercache 1\ngarbage"), 0o600)
		}
		return nil
	})
	s = catalog(t, img, lc)
	if got := s.Layers(); got != (LayerStats{Cataloged: 4}) {
		t.Errorf("after damage: %+v", got)
	}
	if got := cdx(t, s); got != want {
		t.Fatalf("after damage:\n%s\nwhole:\n%s", got, want)
	}
}

// A cache entry that is sound (its checksum holds) but whose catalog does
// not decode is not trusted: that layer is cataloged again, its squashed
// tree built again where readImage merged it into the next one's, and the
// SBOM is the whole image's.
func TestLayersUndecodableEntryCatalogedAgain(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	img := layeredImage(t, "12")
	catalog(t, img, lc)
	keys := configKeys(t, img)
	jar, err := fixture.LibraryJar(fixture.Maven{Group: "org.example", Artifact: "next", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	next := layeredImage(t, "12", fixture.File{Path: "opt/lib/next-1.0.0.jar", Data: jar})
	want := cdx(t, catalog(t, next, nil))
	for _, tc := range []struct {
		name    string
		damaged []int // of img's layers
		want    LayerStats
	}{
		{"the layer under the new top", []int{len(keys) - 1}, LayerStats{Cached: 3, Cataloged: 2}},
		// The top layer's catalog is cached now.
		{"the lowest and the one under the top", []int{0, len(keys) - 1}, LayerStats{Cached: 3, Cataloged: 2}},
		{"a middle one", []int{1}, LayerStats{Cached: 4, Cataloged: 1}},
	} {
		for _, i := range tc.damaged {
			if err := lc.Put(keys[i], []byte(`{"not": "a catalog"}`)); err != nil {
				t.Fatal(err)
			}
		}
		s := catalog(t, next, lc)
		if got := s.Layers(); got != tc.want {
			t.Errorf("%s damaged: %+v, want %+v", tc.name, got, tc.want)
		}
		if got := cdx(t, s); got != want {
			t.Fatalf("%s damaged:\n%s\nwhole:\n%s", tc.name, got, want)
		}
	}
	// The top layer's own entry: the image is released again.
	nextKeys := configKeys(t, next)
	if err := lc.Put(nextKeys[len(nextKeys)-1], []byte("{}")); err != nil {
		t.Fatal(err)
	}
	s := catalog(t, next, lc)
	if got := s.Layers(); got != (LayerStats{Cached: 4, Cataloged: 1}) {
		t.Errorf("top damaged: %+v", got)
	}
	if got := cdx(t, s); got != want {
		t.Fatalf("top damaged:\n%s\nwhole:\n%s", got, want)
	}
}

// configKeys are the layer cache's keys of img's layers, bottom first.
func configKeys(t *testing.T, img v1.Image) []string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	chain := ""
	for _, d := range cf.RootFS.DiffIDs {
		chain = chainID(chain, d.String())
		keys = append(keys, layerKey(chain))
	}
	return keys
}

// The catalog of the layer cataloged last goes into the cache in the
// background while the SBOM is encoded (see catalogLayers): encoding it
// meanwhile reads what the write reads (go test -race checks that nothing
// changes it), and once Close returns the cache holds every layer.
func TestLastLayerWrittenWhileTheSBOMIsEncoded(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	img := layeredImage(t, "12")
	want := cdx(t, catalog(t, img, nil))
	c := NewCataloger(Tool{Name: "lotse", Version: "test"})
	s, err := c.Generate(context.Background(), img, "registry.example.com/team/app:1.0", t.TempDir(), lc)
	if err != nil {
		t.Fatal(err)
	}
	got := cdx(t, s)
	for _, f := range []Format{SPDXJSON, SyftJSON} {
		if _, err := s.Bytes(f); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if got != want {
		t.Fatalf("by layer, encoded while the last layer was written:\n%s\nwhole:\n%s", got, want)
	}
	if got := catalog(t, img, lc).Layers(); got != (LayerStats{Cached: 4}) {
		t.Errorf("after Close, the cache gives %+v, want all 4 layers cached", got)
	}
}

// A layer that changes the distribution's version changes every OS
// package's identifier: the image is cataloged whole.
func TestLayersWithAnotherReleaseCatalogWhole(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	img := layeredImage(t, "13")
	want := cdx(t, catalog(t, img, nil))
	s := catalog(t, img, lc)
	if got := s.Layers(); got != (LayerStats{Cataloged: 4, Whole: true}) {
		t.Errorf("stats: %+v", got)
	}
	if got := cdx(t, s); got != want {
		t.Fatalf("by layer:\n%s\nwhole:\n%s", got, want)
	}
}

// Images whose layers split what syft relates across files are cataloged
// whole, and come out as syft catalogs them.
func TestLayersSyftRelatesCatalogWhole(t *testing.T) {
	site := "usr/lib/python3.12/site-packages/"
	dist := func(name, version, requires string) []fixture.File {
		info := site + name + "-" + version + ".dist-info/"
		meta := "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"
		if requires != "" {
			meta += "Requires-Dist: " + requires + "\n"
		}
		return []fixture.File{{Path: info + "METADATA", Data: []byte(meta)}, {Path: info + "RECORD", Data: []byte(name + "/__init__.py,,\n")}}
	}
	layer := func(files ...[]fixture.File) v1.Layer {
		var all []fixture.File
		for _, f := range files {
			all = append(all, f...)
		}
		l, err := fixture.Layer(all...)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	debian := fixture.DebianFiles(fixture.DebianPackages)
	for name, layers := range map[string][]v1.Layer{
		// pip install in two steps: requests (layer 2) requires urllib3 (layer 1).
		"python in two layers": {layer(debian, dist("urllib3", "2.2.1", "")), layer(dist("requests", "2.31.0", "urllib3 (<3,>=1.21.1)"))},
		// distroless: one dpkg status file per package, in different layers.
		"dpkg status.d": {
			layer([]fixture.File{{Path: "etc/os-release", Data: []byte("ID=debian\nVERSION_ID=\"12\"\n")},
				{Path: "var/lib/dpkg/status.d/libc6", Data: []byte("Package: libc6\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\nStatus: install ok installed\n")}}),
			layer([]fixture.File{{Path: "var/lib/dpkg/status.d/libssl3", Data: []byte("Package: libssl3\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\nStatus: install ok installed\nDepends: libc6 (>= 2.34)\n")}}),
		},
	} {
		t.Run(name, func(t *testing.T) {
			img, err := fixture.Image(layers...)
			if err != nil {
				t.Fatal(err)
			}
			lc, err := layercache.Open(t.TempDir(), 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			whole := catalog(t, img, nil)
			if whole.Len() < 2 {
				t.Fatalf("fixture: syft found %v", whole.Packages())
			}
			s := catalog(t, img, lc)
			if got := s.Layers(); !got.Whole {
				t.Errorf("stats %+v: want the image cataloged whole", got)
			}
			// A release on the same lower layers reads them in full, not
			// as outlines (it would have to read them again).
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if got := CachedLayers(cf.RootFS.DiffIDs, lc); slices.Contains(got, true) {
				t.Errorf("CachedLayers after a whole catalog = %v, want none", got)
			}
			next := append(slices.Clone(cf.RootFS.DiffIDs[:len(cf.RootFS.DiffIDs)-1]), v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)})
			if got := CachedLayers(next, lc); slices.Contains(got, true) {
				t.Errorf("CachedLayers of a new top layer on those lower layers = %v, want none", got)
			}
			if got, want := cdx(t, s), cdx(t, whole); got != want {
				t.Fatalf("by layer:\n%s\nwhole:\n%s", got, want)
			}
			if !strings.Contains(cdx(t, whole), `"dependsOn"`) {
				t.Errorf("fixture: syft relates nothing here, so the test proves nothing:\n%s", cdx(t, whole))
			}
		})
	}
}

// syft's license scanner is built only for a license text the cache does
// not hold, and the SBOM is the one syft's own scanner gives: a cache
// that an image was cataloged through builds none for layers from the
// cache, nor for a new layer whose license texts were seen; a new text
// builds it.
func TestLicenseScannerBuiltOnlyForNewTexts(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	tool := Tool{Name: "lotse", Version: "test"}
	nodePackage := func(name, license string) []fixture.File {
		dir := "app/node_modules/" + name + "/"
		return []fixture.File{
			{Path: dir + "package.json", Data: []byte(`{"name": "` + name + `", "version": "1.0.0"}`)},
			{Path: dir + "LICENSE", Data: []byte(license)},
		}
	}
	// reference catalogs img whole with syft's own license scanner.
	reference := func(img v1.Image) string {
		c := NewCataloger(tool)
		defer c.Close()
		var err error
		if c.lic, err = syft.SetContextLicenseScanner(context.Background(), syft.DefaultCreateSBOMConfig().Licenses); err != nil {
			t.Fatal(err)
		}
		s, err := c.Generate(context.Background(), img, "registry.example.com/team/app:1.0", t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return cdx(t, s)
	}
	release := func(img v1.Image, wantExpected bool) (*Cataloger, *SBOM) {
		t.Helper()
		c := NewCataloger(tool, WithLicenseCache(lc))
		if c.licenses.expected() != wantExpected {
			t.Fatalf("scanner expected %v, want %v", !wantExpected, wantExpected)
		}
		defer c.Close()
		s, err := c.Generate(context.Background(), img, "registry.example.com/team/app:1.0", t.TempDir(), lc)
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if got, want := cdx(t, s), reference(img); got != want {
			t.Fatalf("SBOM:\n%s\nwant (syft's scanner):\n%s", got, want)
		}
		return c, s
	}

	img := layeredImage(t, "12", nodePackage("a", fixture.MITLicense)...)
	c, _ := release(img, true) // a new cache: built ahead
	if c.licenses.builds.Load() != 1 {
		t.Errorf("first release: %d builds, want 1", c.licenses.builds.Load())
	}
	c, s := release(img, false) // every layer from the cache
	if n := c.licenses.builds.Load(); n != 0 || s.Layers() != (LayerStats{Cached: 5}) {
		t.Errorf("from the cache: %d builds, %+v", n, s.Layers())
	}
	next := layeredImage(t, "12", append(nodePackage("a", fixture.MITLicense), nodePackage("b", fixture.MITLicense)...)...)
	c, s = release(next, false) // a new layer, a text seen before
	if n, hits := c.licenses.builds.Load(), c.licenses.hits.Load(); n != 0 || hits == 0 || s.Layers() != (LayerStats{Cached: 4, Cataloged: 1}) {
		t.Errorf("a new layer with known texts: %d builds, %d hits, %+v", n, hits, s.Layers())
	}
	other := layeredImage(t, "12", nodePackage("c", licenseTexts["two"])...)
	c, _ = release(other, false) // a new text
	if n := c.licenses.builds.Load(); n != 1 {
		t.Errorf("a new text: %d builds, want 1", n)
	}
}
