package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// VerifyLayers reads every layer of img once and checks what the image
// claims about it: that its compressed bytes have the digest the manifest
// names (what a registry stores and a push sends) and that its uncompressed
// bytes have the diff ID the config names (what trivy, syft and the layer
// cache name a layer's analysis by).
//
// Whoever builds an image writes both claims. Nothing else checks them for
// a local OCI layout, and nothing checks the diff IDs for a registry image;
// a layer that claims another layer's diff ID would borrow that layer's
// cached analysis and never be analysed, and a layout blob that is not what
// its name says would be analysed while the registry's blob of that name is
// published.
func VerifyLayers(ctx context.Context, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("verify layers: %w", err)
	}
	// The diff IDs as the config lists them: what trivy and syft read.
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("verify layers: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return fmt.Errorf("verify layers: the image config lists %d diff IDs for %d layers", len(cf.RootFS.DiffIDs), len(layers))
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i, l := range layers {
		g.Go(func() error { return verifyLayer(ctx, i+1, l, cf.RootFS.DiffIDs[i]) })
	}
	return g.Wait()
}

func verifyLayer(ctx context.Context, n int, l v1.Layer, diffID v1.Hash) error {
	digest, err := l.Digest()
	if err != nil {
		return fmt.Errorf("layer %d: %w", n, err)
	}
	got, err := hashOf(ctx, l.Compressed)
	if err != nil {
		return fmt.Errorf("layer %d (%s): %w", n, digest, err)
	}
	if got != digest.String() {
		return fmt.Errorf("layer %d: the manifest names it %s, but its content is %s", n, digest, got)
	}
	if got, err = hashOf(ctx, l.Uncompressed); err != nil {
		return fmt.Errorf("layer %d (%s): %w", n, digest, err)
	}
	if got != diffID.String() {
		return fmt.Errorf("layer %d (%s): the image config says its diff ID is %s, but its content is %s", n, digest, diffID, got)
	}
	return nil
}

func hashOf(ctx context.Context, open func() (io.ReadCloser, error)) (string, error) {
	rc, err := open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, rc}); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
