package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lotse/lotse/internal/oci/ocitest"
)

// writeLayout writes img to an OCI layout and reads it back, so that its
// layers' digests and diff IDs are the manifest's and the config's claims.
func writeLayout(t *testing.T, img v1.Image) (layout.Path, v1.Image) {
	t.Helper()
	p, err := layout.Write(t.TempDir(), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	back, err := p.Image(d)
	if err != nil {
		t.Fatal(err)
	}
	return p, back
}

func tarOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tw, content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// An image with a gzip, a zstd and an uncompressed layer, the same empty
// layer twice, read back from a layout: every layer is served from its file,
// with the bytes the layer holds, by index, diff ID and digest.
func TestUnpackServesCheckedLayers(t *testing.T) {
	ctx := context.Background()
	opener := func(b []byte) tarball.Opener {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	gz, err := tarball.LayerFromOpener(opener(tarOf(t, "etc/gz", "gzip")))
	if err != nil {
		t.Fatal(err)
	}
	zst, err := tarball.LayerFromOpener(opener(tarOf(t, "etc/zst", "zstd")), tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	plain := static.NewLayer(tarOf(t, "etc/plain", "plain"), types.OCIUncompressedLayer)
	emptyLayer, err := tarball.LayerFromOpener(opener(tarOf(t, "etc/empty", "")))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, gz, emptyLayer, zst, plain, emptyLayer)
	if err != nil {
		t.Fatal(err)
	}
	_, img = writeLayout(t, img)
	dir := t.TempDir()
	var (
		mu       sync.Mutex
		reported = map[string]bool{}
	)
	u, err := Unpack(ctx, img, dir, OnLayer(func(path string) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("OnLayer: %v", err)
		}
		reported[path] = true
	}))
	if err != nil {
		t.Fatal(err)
	}
	ls, err := u.Layers()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gzip", "", "zstd", "plain", ""}
	if len(ls) != len(want) {
		t.Fatalf("%d layers, want %d", len(ls), len(want))
	}
	srcLayers, _ := img.Layers()
	for i, l := range ls {
		diffID, _ := srcLayers[i].DiffID()
		digest, _ := srcLayers[i].Digest()
		path := filepath.Join(dir, strconv.Itoa(i)+"-"+strings.ReplaceAll(diffID.String(), ":", "-"))
		if _, err := os.Stat(path); err != nil {
			t.Errorf("layer %d: not in stereoscope's name: %v", i+1, err)
		}
		if !reported[path] {
			t.Errorf("layer %d: OnLayer not called with its file", i+1)
		}
		for _, got := range []v1.Layer{l, must(u.LayerByDiffID(diffID)), must(u.LayerByDigest(digest))} {
			rc, err := got.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := rc.(interface{ Name() string }); !ok || filepath.Dir(f.Name()) != dir {
				t.Errorf("layer %d is not served from its file", i+1)
			}
			tr := tar.NewReader(rc)
			if _, err := tr.Next(); err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			rc.Close()
			if string(b) != want[i] {
				t.Errorf("layer %d holds %q, want %q", i+1, b, want[i])
			}
		}
		if d, _ := l.Digest(); d != digest {
			t.Errorf("layer %d: digest %s, want %s", i+1, d, digest)
		}
	}
	if _, err := u.LayerByDiffID(v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}); err == nil {
		t.Error("a diff ID the image does not have was found")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != len(want) {
		t.Errorf("%d files in the directory, want one per layer", len(entries))
	}
	if len(reported) != len(want) {
		t.Errorf("OnLayer called with %d files, want %d", len(reported), len(want))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestUnpackRefusesFalseClaims(t *testing.T) {
	ctx := context.Background()
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}

	// The builder's attack on the layer cache: layer 3 claims layer 1's
	// diff ID, to borrow its analysis.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[2] = cf.RootFS.DiffIDs[0]
	lying, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	_, lying = writeLayout(t, lying)
	dir := t.TempDir()
	lied := filepath.Join(dir, "2-"+strings.ReplaceAll(cf.RootFS.DiffIDs[0].String(), ":", "-"))
	_, err = Unpack(ctx, lying, dir, OnLayer(func(path string) {
		if path == lied {
			t.Error("OnLayer was called with the lying layer")
		}
	}))
	if err == nil || !strings.Contains(err.Error(), "layer 3") || !strings.Contains(err.Error(), "diff ID is "+cf.RootFS.DiffIDs[0].String()) {
		t.Fatalf("a layer that claims another's diff ID: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "2-"+strings.ReplaceAll(cf.RootFS.DiffIDs[0].String(), ":", "-"))); err == nil {
		t.Error("the lying layer was put in place under the diff ID it claims")
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "partial-*")); len(matches) > 0 {
		t.Errorf("partial files left: %v", matches)
	}

	// A layout blob that is not what its name says.
	p, swapped := writeLayout(t, img)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d0, _ := ls[0].Digest()
	d1, _ := ls[1].Digest()
	other, err := os.ReadFile(filepath.Join(string(p), "blobs", d1.Algorithm, d1.Hex))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(string(p), "blobs", d0.Algorithm, d0.Hex), other, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Unpack(ctx, swapped, t.TempDir()); err == nil || !strings.Contains(err.Error(), "layer 1: the manifest names it "+d0.String()) {
		t.Fatalf("a swapped blob: %v", err)
	}

	// A config that lists fewer diff IDs than there are layers.
	cf2, _ := img.ConfigFile()
	cf2 = cf2.DeepCopy()
	cf2.RootFS.DiffIDs = cf2.RootFS.DiffIDs[:2]
	short, err := mutate.ConfigFile(img, cf2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unpack(ctx, short, t.TempDir()); err == nil || !strings.Contains(err.Error(), "2 diff IDs for 3 layers") {
		t.Fatalf("a config short of diff IDs: %v", err)
	}

	_, honest := writeLayout(t, img)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Unpack(canceled, honest, t.TempDir()); err == nil {
		t.Fatal("a canceled unpack succeeded")
	}
}

// dockerSave writes img as `docker save` does (manifest.json, the config,
// each layer as an uncompressed layer.tar), with the config's diff IDs
// replaced by diffIDs when given.
func dockerSave(t *testing.T, img v1.Image, diffIDs []v1.Hash) string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	if diffIDs != nil {
		cf.RootFS.DiffIDs = diffIDs
	}
	cfg, err := json.Marshal(cf)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	add("config.json", cfg)
	var names []string
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, fmt.Sprintf("l%d/layer.tar", i))
		add(names[i], b)
	}
	m, err := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"app:1"}, "Layers": names}})
	if err != nil {
		t.Fatal(err)
	}
	add("manifest.json", m)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// A `docker save` tarball names no layer digests: with DerivedDigests each
// layer is read uncompressed once and only its diff ID is checked, which
// still refuses a layer that claims another's diff ID.
func TestUnpackDockerSave(t *testing.T) {
	ctx := context.Background()
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := tarball.ImageFromPath(dockerSave(t, img, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]UnpackOption{{DerivedDigests()}, nil} {
		u, err := Unpack(ctx, saved, t.TempDir(), opts...)
		if err != nil {
			t.Fatalf("Unpack(%d options): %v", len(opts), err)
		}
		ls, _ := u.Layers()
		want, _ := img.Layers()
		for i := range ls {
			got, _ := ls[i].DiffID()
			w, _ := want[i].DiffID()
			if got != w {
				t.Errorf("layer %d: diff ID %s, want %s", i+1, got, w)
			}
			rc, err := ls[i].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			io.Copy(h, rc) //nolint:errcheck // compared below
			rc.Close()
			if "sha256:"+hex.EncodeToString(h.Sum(nil)) != w.String() {
				t.Errorf("layer %d: the file does not hold the layer", i+1)
			}
		}
	}

	// A config whose diff ID for layer 2 is not its content's. (One that
	// claims layer 1's diff ID is read by go-containerregistry as layer 1
	// twice, for the analysis and the push alike: layer 2's file is then
	// neither analysed nor published.)
	cf, _ := img.ConfigFile()
	lie := []v1.Hash{cf.RootFS.DiffIDs[0], {Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}}
	lying, err := tarball.ImageFromPath(dockerSave(t, img, lie), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unpack(ctx, lying, t.TempDir(), DerivedDigests()); err == nil || !strings.Contains(err.Error(), "layer 2") || !strings.Contains(err.Error(), "diff ID is "+lie[1].String()) {
		t.Fatalf("a docker save tarball whose config lies about layer 2: %v", err)
	}
}

// A layer checked once is remembered; the next unpack checks its digest
// only. A config that claims another diff ID for it is still refused, and
// a layer whose digest is unknown is checked in full.
func TestUnpackKnownDiffIDs(t *testing.T) {
	ctx := context.Background()
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, img = writeLayout(t, img)
	known := ocitest.NewLayers()
	if _, err := Unpack(ctx, img, t.TempDir(), KnownDiffIDs(known)); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	for i, l := range ls {
		d, _ := l.Digest()
		if got, _ := known.DiffID(d); got != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: remembered %v, want %v", i+1, got, cf.RootFS.DiffIDs[i])
		}
	}
	known.Remembered()
	dir := t.TempDir()
	u, err := Unpack(ctx, img, dir, KnownDiffIDs(known))
	if err != nil {
		t.Fatal(err)
	}
	if n := known.Remembered(); n != 0 {
		t.Errorf("%d layers checked in full again", n)
	}
	for i, l := range must(u.Layers()) {
		rc := must(l.Uncompressed())
		got := sha256.New()
		io.Copy(got, rc) //nolint:errcheck // compared below
		rc.Close()
		if sum(got) != cf.RootFS.DiffIDs[i].String() {
			t.Errorf("layer %d: served bytes are not its diff ID's", i+1)
		}
	}

	// Layer 3 claims layer 1's diff ID: known names another one for its
	// digest, so it is checked in full, and refused.
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[2] = cf.RootFS.DiffIDs[0]
	lying, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unpack(ctx, lying, t.TempDir(), KnownDiffIDs(known)); err == nil || !strings.Contains(err.Error(), "layer 3") {
		t.Fatalf("a layer that claims another's diff ID, with known diff IDs: %v", err)
	}
}
