package oci

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
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

func TestVerifyLayers(t *testing.T) {
	ctx := context.Background()
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, honest := writeLayout(t, img)
	if err := VerifyLayers(ctx, honest); err != nil {
		t.Fatalf("an honest image: %v", err)
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
	err = VerifyLayers(ctx, lying)
	if err == nil || !strings.Contains(err.Error(), "layer 3") || !strings.Contains(err.Error(), "diff ID is "+cf.RootFS.DiffIDs[0].String()) {
		t.Fatalf("a layer that claims another's diff ID: %v", err)
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
	if err := VerifyLayers(ctx, swapped); err == nil || !strings.Contains(err.Error(), "layer 1: the manifest names it "+d0.String()) {
		t.Fatalf("a swapped blob: %v", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := VerifyLayers(canceled, honest); err == nil {
		t.Fatal("a canceled verification succeeded")
	}
}
