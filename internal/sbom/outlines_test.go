package sbom

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/internal/oci"
	"github.com/lotse/lotse/internal/oci/ocitest"
	"github.com/lotse/lotse/test/fixture"
)

// unpackForSBOM unpacks img as a release does: a layer whose catalog lc
// holds is put in place as its outline when it was read before.
func unpackForSBOM(t *testing.T, img v1.Image, lc Cache, m *ocitest.Layers) *oci.Unpacked {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m.Need(CachedLayers(cf.RootFS.DiffIDs, lc)...)
	u, err := oci.Unpack(context.Background(), img, filepath.Join(t.TempDir(), "layers"), oci.KnownDiffIDs(m), oci.WithOutlines(m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.WaitOutlines)
	return u
}

func generateLinked(u *oci.Unpacked, dir string, lc Cache) (*SBOM, error) {
	c := NewCataloger(Tool{Name: "lotse", Version: "test"})
	defer c.Close()
	return c.Generate(context.Background(), u.LinkLayers(dir), "registry.example.com/team/app:1.0", dir, lc)
}

// A release whose lower layers were cataloged before reads them as
// outlines, their file trees without their contents, and writes the SBOM
// syft writes for the whole image.
func TestOutlinedLayersCatalogLikeTheWholeImage(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	m := ocitest.NewLayers()
	first := unpackForSBOM(t, layeredImage(t, "12"), lc, m)
	s, err := generateLinked(first, filepath.Join(t.TempDir(), "sbom"), lc)
	if err != nil {
		t.Fatal(err)
	}
	first.WaitOutlines()
	if s.Layers().Outlined != 0 || m.Kept() != 4 {
		t.Fatalf("first release: %+v, %d outlines kept; want none outlined, 4 kept", s.Layers(), m.Kept())
	}

	img := layeredImage(t, "12", fixture.File{Path: "app/node_modules/left-pad/package.json", Data: []byte(`{"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}`)})
	u := unpackForSBOM(t, img, lc, m)
	got, err := generateLinked(u, filepath.Join(t.TempDir(), "sbom"), lc)
	if err != nil {
		t.Fatal(err)
	}
	if want := (LayerStats{Cached: 4, Outlined: 4, Cataloged: 1}); got.Layers() != want {
		t.Errorf("layers: %+v, want %+v", got.Layers(), want)
	}
	if want := catalog(t, img, nil); cdx(t, got) != cdx(t, want) {
		t.Error("the SBOM with outlined layers differs from the whole image's")
	}
}

// hidingCache loses the entries whose keys contain hide.
type hidingCache struct {
	Cache
	hide string
}

func (c hidingCache) Get(key string) ([]byte, bool) {
	if strings.Contains(key, c.hide) {
		return nil, false
	}
	return c.Cache.Get(key)
}

// An outline is all a release reads of a layer only while what syft needs
// of it is cached: when a new layer's cataloging reads a file an outline
// left out (a package's RECORD under a METADATA the new layer rewrote), or
// an outlined layer's catalog is gone from the cache, Generate says
// ErrOutlined instead of an SBOM that misses what the file held; the
// layers filled, the SBOM is the whole image's.
func TestOutlinedLayersNeededInFull(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	m := ocitest.NewLayers()
	first := unpackForSBOM(t, layeredImage(t, "12"), lc, m)
	if _, err := generateLinked(first, filepath.Join(t.TempDir(), "sbom"), lc); err != nil {
		t.Fatal(err)
	}
	first.WaitOutlines()

	rewritten := layeredImage(t, "12", fixture.PythonMetadata("requests", "2.31.0", fixture.LangPackages[0].Path))
	u := unpackForSBOM(t, rewritten, lc, m)
	_, err = generateLinked(u, filepath.Join(t.TempDir(), "sbom"), lc)
	if !errors.Is(err, ErrOutlined) || !strings.Contains(err.Error(), "requests-2.31.0.dist-info/RECORD") {
		t.Fatalf("a new layer that reads an outlined layer's RECORD: %v, want ErrOutlined naming RECORD", err)
	}
	if err := u.Fill(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := generateLinked(u, filepath.Join(t.TempDir(), "sbom-filled"), lc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Layers().Outlined != 0 {
		t.Errorf("filled layers read as outlines: %+v", got.Layers())
	}
	if want := catalog(t, rewritten, nil); cdx(t, got) != cdx(t, want) {
		t.Error("the SBOM of the filled layers differs from the whole image's")
	}

	// The catalog of an outlined layer, lost between unpack and Generate.
	img := layeredImage(t, "12", fixture.File{Path: "app/readme.txt", Data: []byte("hi\n")})
	u = unpackForSBOM(t, img, lc, m)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	second := chainID(cf.RootFS.DiffIDs[0].String(), cf.RootFS.DiffIDs[1].String())
	_, err = generateLinked(u, filepath.Join(t.TempDir(), "sbom"), hidingCache{Cache: lc, hide: second})
	if !errors.Is(err, ErrOutlined) || !strings.Contains(err.Error(), "layer 2") {
		t.Fatalf("an outlined layer without its catalog: %v, want ErrOutlined naming layer 2", err)
	}
	// Nor is an image with outlined layers cataloged whole.
	c := NewCataloger(Tool{Name: "lotse", Version: "test"})
	defer c.Close()
	dir := filepath.Join(t.TempDir(), "sbom")
	if _, err := c.Generate(context.Background(), u.LinkLayers(dir), "app", dir, nil); !errors.Is(err, ErrOutlined) {
		t.Fatalf("outlined layers without a layer cache: %v, want ErrOutlined", err)
	}
}

// An image whose layers' catalogs cannot be merged (Python packages in two
// layers) is cataloged whole, which outlines cannot serve: Generate says
// ErrOutlined, and the next release on those lower layers reads them in
// full (CachedLayers reports none).
func TestOutlinedLayersOfAnImageCatalogedWhole(t *testing.T) {
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	site := "usr/local/lib/python3.12/site-packages/"
	base, err := fixture.Layer(append(fixture.DebianFiles(fixture.DebianPackages), fixture.PythonMetadata("urllib3", "2.2.1", site+"urllib3-2.2.1.dist-info/METADATA"))...)
	if err != nil {
		t.Fatal(err)
	}
	top, err := fixture.Layer(fixture.PythonMetadata("requests", "2.31.0", site+"requests-2.31.0.dist-info/METADATA"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := fixture.Image(base, top)
	if err != nil {
		t.Fatal(err)
	}
	m := ocitest.NewLayers()
	first := unpackForSBOM(t, img, lc, m)
	s, err := generateLinked(first, filepath.Join(t.TempDir(), "sbom"), lc)
	if err != nil {
		t.Fatal(err)
	}
	first.WaitOutlines()
	if !s.Layers().Whole {
		t.Fatalf("fixture: %+v, want the image cataloged whole", s.Layers())
	}
	// Outlines forced on the base layer, whose catalog is cached.
	u, err := oci.Unpack(context.Background(), img, filepath.Join(t.TempDir(), "layers"), oci.KnownDiffIDs(m), oci.WithOutlines(m.Need(true, false)))
	if err != nil {
		t.Fatal(err)
	}
	if u.Outlines() != 1 {
		t.Fatalf("%d layers outlined, want 1", u.Outlines())
	}
	if _, err := generateLinked(u, filepath.Join(t.TempDir(), "sbom"), lc); !errors.Is(err, ErrOutlined) || !strings.Contains(err.Error(), "cataloged whole") {
		t.Fatalf("outlines of an image cataloged whole: %v, want ErrOutlined", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := CachedLayers(cf.RootFS.DiffIDs, lc); got[0] || got[1] {
		t.Errorf("CachedLayers = %v, want none: the image was cataloged whole", got)
	}
}
