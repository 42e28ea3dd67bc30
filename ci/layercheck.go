package ci

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/internal/oci"
)

// layerCheck verifies, beside the analysis, what an image claims about its
// layers (oci.VerifyLayers). trivy, syft and the layer cache name a layer's
// analysis by its claimed diff ID (trivy analyses two layers that claim one
// diff ID once, and reports the other unread), and a release publishes by
// the manifest's digests; so nothing is written to the cache, reported or
// published before the check passed.
type layerCheck struct {
	done chan struct{}
	err  error
}

func checkLayers(ctx context.Context, img v1.Image) *layerCheck {
	c := &layerCheck{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = oci.VerifyLayers(ctx, img)
	}()
	return c
}

// wait returns the check's result once it has one.
func (c *layerCheck) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkedCache is the layer cache for one image: entries are read at once
// (a result that used a false claim is never reported: the caller waits for
// the check before it writes anything), and written only once the image's
// claims are verified, so a lying image cannot leave an analysis under
// another layer's name.
type checkedCache struct {
	lc    *layercache.Cache
	check *layerCheck
}

func (c checkedCache) Get(key string) ([]byte, bool) { return c.lc.Get(key) }

func (c checkedCache) Put(key string, value []byte) error {
	if err := c.check.wait(context.Background()); err != nil {
		return err
	}
	return c.lc.Put(key, value)
}
