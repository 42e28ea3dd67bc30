package sbom

import (
	"errors"
	"fmt"
	"sync"

	"github.com/anchore/syft/syft/file"
)

// ErrOutlined says that an SBOM needed the contents of a layer it was given
// as an outline (internal/oci's WithOutlines: the layer's file tree, most
// contents left out). The caller fills the layers and generates again.
var ErrOutlined = errors.New("the SBOM needs an outlined layer's contents")

// outlinedImage is an image some of whose layers may be outlines
// (oci.Linked).
type outlinedImage interface {
	// Outlined says whether the layer with diffID is an outline, and which
	// files' contents it kept.
	Outlined(diffID string) (kept func(path string) bool, ok bool)
}

// outlineGuard knows an image's outlined layers (by diff ID) and records
// the first read of a content an outline left out.
type outlineGuard struct {
	layers map[string]func(path string) bool

	mu   sync.Mutex
	miss string
}

// newOutlineGuard returns nil when none of diffIDs is an outline in img.
func newOutlineGuard(img any, diffIDs []string) *outlineGuard {
	oi, ok := img.(outlinedImage)
	if !ok {
		return nil
	}
	g := &outlineGuard{layers: map[string]func(string) bool{}}
	for _, d := range diffIDs {
		if kept, ok := oi.Outlined(d); ok {
			g.layers[d] = kept
		}
	}
	if len(g.layers) == 0 {
		return nil
	}
	return g
}

func (g *outlineGuard) outlined(diffID string) bool {
	if g == nil {
		return false
	}
	_, ok := g.layers[diffID]
	return ok
}

// check returns an error, and records it, when l's content (or metadata,
// whose MIME type stereoscope read from the content) was left out.
func (g *outlineGuard) check(l file.Location) error {
	if g == nil {
		return nil
	}
	kept, ok := g.layers[l.FileSystemID]
	if !ok || kept(l.RealPath) {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.miss == "" {
		g.miss = l.RealPath + " in layer " + l.FileSystemID
	}
	return fmt.Errorf("%w: %s", ErrOutlined, l.RealPath)
}

// err is the first left-out read, if any.
func (g *outlineGuard) err() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.miss == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrOutlined, g.miss)
}
