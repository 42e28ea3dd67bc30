package ci

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/internal/oci"
	"github.com/lotse/lotse/internal/sbom"
	"github.com/lotse/lotse/internal/scan"
)

// loaded is an image opened for analysis (and, in release, publishing); see
// load.
type loaded struct {
	src      oci.Source
	art      *oci.Artifact
	opts     oci.Options
	dir      string // temporary directory: the local copy and unpacked layers
	unpacked *oci.Unpacked
	cached   []bool // cachedLayers' answer, once asked
}

// cachedLayers says which of the image's layers have their catalogs in the
// layer cache (sbom.CachedLayers; nil if the config cannot be read). A
// release asks twice (is it warm; which layers to outline) before anything
// is written into the cache: it is read once.
func (l *loaded) cachedLayers(layers *layercache.Cache) []bool {
	if l.cached == nil {
		if cf, err := l.art.Image.ConfigFile(); err == nil && cf != nil {
			l.cached = sbom.CachedLayers(cf.RootFS.DiffIDs, layers)
		}
	}
	return l.cached
}

// close removes the local copy and the unpacked layers, once the outlines
// of layers read in full are kept (in the layer cache, which is closed
// after).
func (l *loaded) close() {
	if l.unpacked != nil {
		l.unpacked.WaitOutlines()
	}
	os.RemoveAll(l.dir)
}

// repoNames are the names a report gives a registry image in its
// repository, as trivy's (scan.RegistryNames); none for other sources.
func (l *loaded) repoNames() (tags, digests []string) {
	if l.src.Kind != oci.Registry {
		return nil, nil
	}
	return scan.RegistryNames(l.src.Ref, l.art.Digest)
}

// layersDir holds the unpacked layers.
func (l *loaded) layersDir() string { return filepath.Join(l.dir, "layers") }

// forSBOM makes the content directory of syft's cataloging (which removes
// it when done; name tells one cataloging from another): it holds links to
// the unpacked layers, so that syft reads them instead of writing its own
// copies. The image returned says which layers were linked as outlines.
func (l *loaded) forSBOM(u *oci.Unpacked, name string) (*oci.Linked, string) {
	dir := filepath.Join(l.dir, name)
	return u.LinkLayers(dir), dir
}

// unpack reads every layer once, checks what the image claims about it and
// keeps it uncompressed in layersDir (oci.Unpack). The SBOM and the scan
// read the image it returns; nothing reads a layer before it was checked,
// so no analysis, report or cache entry can rest on a false claim. cat
// (or nil) foresees from each layer whether to build its license scanner,
// and indexes each layer as it is written (sbom.Cataloger.FollowLayer).
// The layer cache (or nil) remembers which diff ID a checked layer digest
// decompresses to, so that a layer seen before is hashed once, not twice
// (oci.KnownDiffIDs).
//
// With the layer cache, a layer that was read and checked before may be
// put in place as its outline, without reading it (oci.WithOutlines), as
// outline says; it is read in full when its contents are first read. Only
// a registry's layers are outlined: they are named by their content.
func (l *loaded) unpack(ctx context.Context, cat *sbom.Cataloger, layers *layercache.Cache, outline outlining) (*oci.Unpacked, error) {
	var opts []oci.UnpackOption
	if cat != nil {
		// Each layer read in full is indexed for the SBOM as it is
		// written, on the core its decompression leaves idle.
		opts = append(opts, oci.OnLayer(cat.Foresee), oci.Follow(cat.FollowLayer))
	}
	if layers != nil {
		opts = append(opts, oci.KnownDiffIDs(layerDiffIDs{layers}))
		if outline != noOutlines && l.src.Kind == oci.Registry {
			if cf, err := l.art.Image.ConfigFile(); err == nil && cf != nil {
				enough := make([]bool, len(cf.RootFS.DiffIDs))
				switch outline {
				case outlineCataloged:
					if c := l.cachedLayers(layers); len(c) == len(enough) {
						enough = c
					}
				case outlineSeen:
					for i := range enough {
						enough[i] = true
					}
				}
				opts = append(opts, oci.WithOutlines(layerOutlines{c: layers, enough: enough}))
			}
		}
	}
	if l.src.Kind == oci.Registry {
		// go-containerregistry checks each blob it reads from a registry
		// against its digest.
		opts = append(opts, oci.RegistryBlobs())
	}
	if l.src.Kind == oci.Archive {
		// `docker save` lists layer files; their digests are computed
		// here, not claimed: only the diff IDs are checked.
		opts = append(opts, oci.DerivedDigests())
	}
	u, err := oci.Unpack(ctx, l.art.Image, l.layersDir(), opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.src, err)
	}
	l.unpacked = u
	return u, nil
}

// outlining says which layers unpack may put in place as outlines.
type outlining int

const (
	noOutlines outlining = iota
	// outlineCataloged: the layers whose SBOM catalogs the layer cache
	// holds (release: the SBOM reads their file trees, trivy its cache).
	outlineCataloged
	// outlineSeen: every layer read before (scan: trivy reads a layer only
	// when its cache misses it, and then the layer is read in full).
	outlineSeen
)

// load parses ref and opens the image. Its layers are read when it is
// unpacked. For a registry image that is to be published to another
// registry (publishTo, a registry host; "" when nothing is published), the
// layers unpacked are kept on disk as they are read, so that the registry
// is read once: the push reads them from there (oci.Spool). A layer read
// as its outline, or another platform's, is read by the push only if the
// destination lacks it. Within one registry nothing is copied: the push
// mounts the blobs from the source repository.
func (a *app) load(ctx context.Context, ref string, rf *registryFlags, publishTo string) (*loaded, error) {
	src, err := oci.ParseSource(ref, rf.insecure)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	var hosts []string
	if src.Kind == oci.Registry {
		hosts = append(hosts, src.Ref.Context().RegistryStr())
	}
	opts, err := a.ociOptions(rf, hosts...)
	if err != nil {
		return nil, err
	}
	art, err := oci.Open(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lotse-image")
	if err != nil {
		return nil, err
	}
	l := &loaded{src: src, art: art, opts: opts, dir: dir}
	if publishTo == "" || src.Kind != oci.Registry || src.Ref.Context().RegistryStr() == publishTo {
		return l, nil
	}
	if l.art, err = oci.Spool(src, art, dir+"/blobs"); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// layerDiffIDs keeps oci.KnownDiffIDs' pairs in the layer cache, which a
// release trusts as it trusts the layer analyses there.
type layerDiffIDs struct{ c *layercache.Cache }

func (k layerDiffIDs) key(digest v1.Hash) string { return "oci/diffid/1/" + digest.String() }

func (k layerDiffIDs) DiffID(digest v1.Hash) (v1.Hash, bool) {
	b, ok := k.c.Get(k.key(digest))
	if !ok {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash(string(b))
	return h, err == nil
}

func (k layerDiffIDs) Remember(digest, diffID v1.Hash) {
	k.c.Put(k.key(digest), []byte(diffID.String())) //nolint:errcheck // a pair not kept costs the next release one hash
}

// layerOutlines keeps the outlines of layers (oci.WithOutlines) in the
// layer cache; enough says which layers' catalogs the cache holds.
type layerOutlines struct {
	c      *layercache.Cache
	enough []bool
}

func (o layerOutlines) key(diffID v1.Hash) string { return "oci/outline/1/" + diffID.String() }

func (o layerOutlines) Enough(i int, _ v1.Hash) bool { return i < len(o.enough) && o.enough[i] }

func (o layerOutlines) Outline(diffID v1.Hash) (io.ReadCloser, bool) { return o.c.Open(o.key(diffID)) }

func (o layerOutlines) Has(diffID v1.Hash) bool { return o.c.Has(o.key(diffID)) }

func (o layerOutlines) Keep(diffID v1.Hash, outline []byte) {
	o.c.Put(o.key(diffID), outline) //nolint:errcheck // an outline not kept costs the next release a layer's read
}
