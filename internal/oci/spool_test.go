package oci

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lotse/lotse/internal/oci/ocitest"
)

// countingRegistry counts the blob downloads it serves.
type countingRegistry struct {
	inner http.Handler
	gets  atomic.Int32
}

func (c *countingRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
		c.gets.Add(1)
	}
	c.inner.ServeHTTP(w, r)
}

func countingLoopback(t *testing.T) (*countingRegistry, string) {
	c := &countingRegistry{inner: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, strings.TrimPrefix(srv.URL, "http://")
}

// Publishing to another registry reads each layer from the source once:
// the layers unpacked are kept as they are read and pushed from there. A
// layer read as its outline is not downloaded when the destination has it
// (the base layers of a release), and is when it lacks it.
func TestSpoolReadsEachLayerOnce(t *testing.T) {
	base := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(outlineLayer(t))), nil }))
	app := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarOf(t, "app/main", "top"))), nil
	}))
	img := must(mutate.AppendLayers(empty.Image, base, app))
	baseImg := must(mutate.AppendLayers(empty.Image, base))
	src, srcHost := countingLoopback(t)
	ref := must(name.NewTag(srcHost + "/ci/app:1"))
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	release := func(t *testing.T, dstHost string, m *ocitest.Layers) {
		t.Helper()
		if d := spoolRelease(t, ref, nil, dstHost, m); d.DigestStr() != must(img.Digest()).String() {
			t.Errorf("pushed %s, want %s", d.DigestStr(), must(img.Digest()))
		}
	}
	m := ocitest.NewLayers()
	_, dst1 := countingLoopback(t)
	src.gets.Store(0)
	release(t, dst1, m)
	if n := src.gets.Load(); n != 3 { // config, two layers
		t.Errorf("cold release to another registry: %d blob downloads, want 3 (config and each layer once)", n)
	}

	// Warm: the base layer is an outline. A destination with the base
	// layer gets only the application layer, read once.
	_, dst2 := countingLoopback(t)
	if err := remote.Write(must(name.NewTag(dst2+"/prod/base:1")), baseImg); err != nil {
		t.Fatal(err)
	}
	m.Need(true, false)
	src.gets.Store(0)
	release(t, dst2, m)
	if n := src.gets.Load(); n != 2 { // config, the application layer
		t.Errorf("warm release to a registry with the base layer: %d blob downloads, want 2", n)
	}
	// A destination without it gets it from the source, at push time.
	_, dst3 := countingLoopback(t)
	src.gets.Store(0)
	release(t, dst3, m)
	if n := src.gets.Load(); n != 3 {
		t.Errorf("warm release to an empty registry: %d blob downloads, want 3", n)
	}
	pushed := must(remote.Image(must(name.NewDigest(dst3 + "/prod/app@" + must(img.Digest()).String()))))
	for i, l := range must(pushed.Layers()) {
		want := must(must(img.Layers())[i].Digest())
		got := must(l.Compressed())
		h, _, err := v1.SHA256(got)
		got.Close()
		if err != nil || h != want {
			t.Errorf("layer %d pushed as %s, want %s", i+1, h, want)
		}
	}
}

// A multi-platform index: the platform analysed is read once, as above;
// the other platforms' blobs are read by the push, once, and only those
// the destination lacks.
func TestSpoolIndex(t *testing.T) {
	base := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(outlineLayer(t))), nil }))
	app := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarOf(t, "app/main", "top"))), nil
	}))
	amd := must(mutate.AppendLayers(empty.Image, base, app))
	arm := must(mutate.AppendLayers(empty.Image, must(tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarOf(t, "app/main", "arm"))), nil
	}))))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	src, srcHost := countingLoopback(t)
	ref := must(name.NewTag(srcHost + "/ci/app:1"))
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	m := ocitest.NewLayers()
	release := func(t *testing.T, dstHost string) {
		t.Helper()
		amd64 := &v1.Platform{OS: "linux", Architecture: "amd64"}
		if d := spoolRelease(t, ref, amd64, dstHost, m); d.DigestStr() != must(idx.Digest()).String() {
			t.Errorf("pushed %s, want the index %s", d.DigestStr(), must(idx.Digest()))
		}
	}
	_, dst1 := countingLoopback(t)
	src.gets.Store(0)
	release(t, dst1)
	// amd64: config and two layers, read to analyse; arm64: config and one
	// layer, read by the push.
	if n := src.gets.Load(); n != 5 {
		t.Errorf("cold: %d blob downloads, want 5", n)
	}
	_, dst2 := countingLoopback(t)
	if err := remote.Write(must(name.NewTag(dst2+"/prod/app:base")), must(mutate.AppendLayers(empty.Image, base))); err != nil {
		t.Fatal(err)
	}
	m.Need(true, false)
	src.gets.Store(0)
	release(t, dst2)
	// The base layer, outlined and at the destination, is not read.
	if n := src.gets.Load(); n != 4 {
		t.Errorf("warm, the base at the destination: %d blob downloads, want 4", n)
	}
}

// spoolRelease does what a release to another registry does with ref:
// open (the platform's image), spool, unpack (outlines as m says), push.
func spoolRelease(t *testing.T, ref name.Reference, platform *v1.Platform, dstHost string, m *ocitest.Layers) name.Digest {
	t.Helper()
	ctx := context.Background()
	s := must(ParseSource(ref.String(), false))
	art := must(Open(ctx, s, Options{Platform: platform}))
	art = must(Spool(s, art, filepath.Join(t.TempDir(), "blobs")))
	u, err := Unpack(ctx, art.Image, t.TempDir(), KnownDiffIDs(m), WithOutlines(m))
	if err != nil {
		t.Fatal(err)
	}
	u.WaitOutlines()
	d, err := Push(ctx, art, must(ParseRepository(dstHost+"/prod/app", false)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
