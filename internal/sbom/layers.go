package sbom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/anchore/stereoscope/pkg/filetree"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/linux"
	"github.com/anchore/syft/syft/pkg"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
	"github.com/anchore/syft/syft/source/stereoscopesource"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// Cache keeps each layer's catalog between runs (lotse's
// internal/layercache): Get misses rather than return a damaged entry;
// Write streams an entry in, and keeps none when write fails.
type Cache interface {
	Get(key string) ([]byte, bool)
	Put(key string, value []byte) error
	Write(key string, write func(io.Writer) error) error
}

// LayerStats says how many of an image's layers were cataloged and how
// many were read from the layer cache, and whether the image was cataloged
// whole (in one pass, not layer by layer).
type LayerStats struct {
	Cached, Cataloged int
	// Outlined counts the cached layers that were read as outlines (their
	// file trees only), not in full.
	Outlined int
	Whole    bool
}

// layerSchema is bumped when what a cached layer catalog holds changes.
const layerSchema = "2"

// catalogLayers catalogs si one layer at a time, each layer through the
// layer cache, and merges the layers into the image's SBOM.
//
// A layer's catalog holds the packages whose evidence (dpkg's status file,
// a jar, a Go binary, a METADATA file...) the layer adds or changes, read in
// the file system of the image up to and including that layer; so it
// depends on the layer and those under it, and its cache key is the layer's
// chain ID (with syft's version). Merging keeps a package only from the
// layer whose file is the one the whole image shows at its evidence path:
// dpkg's packages come from the last layer that rewrote the status file,
// and a file a later layer deletes or replaces no longer counts. That is
// the package set syft finds in the squashed image.
//
// Where a layer's catalog cannot stand for its part of the image, the
// image is cataloged whole (see merge): a kept layer saw another Linux
// distribution than the image (a later layer changed /etc/os-release), so
// its packages' identifiers would differ from syft's; or syft relates
// packages across layers in ways a layer's catalog cannot see.
//
// A layer given as an outline (guard) must have its catalog cached: it is
// never cataloged itself, nor is the image whole; either returns
// ErrOutlined.
//
// top builds the top layer's squashed tree, should readImage have left it
// to be built onto the squashed tree under it once the layer under the top
// one is cataloged (see squashLayers).
func (c *Cataloger) catalogLayers(ctx context.Context, si *image.Image, top func() error, ref string, cfg *syft.CreateSBOMConfig, lc Cache, pre *cachedLayers, guard *outlineGuard) (*syftsbom.SBOM, LayerStats, error) {
	var stats LayerStats
	n := len(si.Layers)
	layers := make([]*syftsbom.SBOM, n)
	keys := layerKeys(si.Layers)
	var todo []int // the layers to catalog
	for i, l := range si.Layers {
		if s := pre.get(keys[i], lc); s != nil {
			layers[i] = s
			stats.Cached++
			if guard.outlined(l.Metadata.Digest) {
				stats.Outlined++
			}
			continue
		}
		if guard.outlined(l.Metadata.Digest) {
			return nil, stats, fmt.Errorf("%w: layer %d (%s) is not in the layer cache", ErrOutlined, i+1, l.Metadata.Digest)
		}
		todo = append(todo, i)
	}
	// A layer's catalog is written into the cache as soon as it is
	// cataloged, beside the layers still being cataloged. The last one's
	// is written once the layers are merged, in the background (Close
	// waits): encoding the catalog of a layer of 10,000 files takes
	// 0.05–0.1 s of a core, which would hold up the merge, while the image's
	// SBOM is then encoded on one core. (The heap holds more meanwhile: lotse
	// release runs the collector more often then.)
	pending := new(atomic.Int32)
	pending.Store(int32(len(todo)))
	last := -1 // the layer cataloged last
	defer func() {
		if last >= 0 {
			c.writeLayer(lc, keys[last], layers[last])
		}
	}()
	// Each layer is cataloged in its own view of the image, so two at a
	// time: syft runs a layer's catalogers side by side, but one of them
	// (dpkg's, hashing the files of 400 packages) often takes most of it.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	names := newBasenameIndex(si.FileCatalog)
	cataloged := make([]chan struct{}, n) // closed once layer i is cataloged, or failed (see doneReading)
	for _, i := range todo {
		cataloged[i] = make(chan struct{})
	}
	for _, i := range todo {
		l := si.Layers[i]
		g.Go(func() error {
			// Closed once syft no longer reads the layer's squashed tree,
			// before its catalog is written into the cache.
			doneReading := sync.OnceFunc(func() { close(cataloged[i]) })
			defer doneReading()
			if i == n-1 {
				// The layers are started bottom first: the one under the
				// top one has been, and is not waited for in vain.
				if i > 0 && cataloged[i-1] != nil {
					select {
					case <-cataloged[i-1]:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
				if err := top(); err != nil {
					return err
				}
			}
			// Its squashed tree, should readImage have merged it into
			// the next one's (see squashLayers).
			if err := squashedAgain(si.Layers, i, si.FileCatalog); err != nil {
				return err
			}
			view := *si
			view.Layers = si.Layers[:i+1]
			// The layer's own search context, as stereoscope makes it,
			// over an index whose basename globs are answered faster.
			view.SquashedSearchContext = filetree.NewSearchContext(l.SquashedTree, names)
			src := layerSource{Source: stereoscopesource.New(&view, stereoscopesource.ImageConfig{Reference: ref}), layer: l.Metadata.Digest}
			s, err := c.catalog(gctx, src, cfg, guard)
			doneReading()
			if err != nil {
				return fmt.Errorf("catalog layer %d (%s): %w", i+1, l.Metadata.Digest, err)
			}
			layers[i] = s
			if pending.Add(-1) == 0 {
				last = i // read after g.Wait
				return nil
			}
			lc.Write(keys[i], func(w io.Writer) error { return encodeLayer(w, s) }) //nolint:errcheck // a cache that cannot be written only costs the next release time
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, stats, err
	}
	stats.Cataloged = len(todo)
	if len(todo) == 0 || todo[len(todo)-1] != n-1 {
		if err := top(); err != nil {
			return nil, stats, err
		}
	}
	topSearch(si)
	full := stereoscopesource.New(si, stereoscopesource.ImageConfig{Reference: ref})
	whole, err := full.FileResolver(source.SquashedScope)
	if err != nil {
		return nil, stats, fmt.Errorf("catalog packages: %w", err)
	}
	out, ok := merge(layers, si, whole)
	if !ok && guard != nil {
		return nil, stats, fmt.Errorf("%w: the image must be cataloged whole", ErrOutlined)
	}
	if !ok && len(keys) > 1 {
		// The next release on these lower layers likely needs the whole
		// image too: it reads them in full rather than as outlines.
		lc.Put(wholeKey(keys[len(keys)-2]), []byte{1}) //nolint:errcheck // costs the next release an outline read
	}
	if !ok {
		s, err := c.catalog(ctx, full, cfg, nil)
		return s, LayerStats{Cataloged: len(si.Layers), Whole: true}, err
	}
	out.Source = full.Describe()
	out.Descriptor = syftsbom.Descriptor{Name: cfg.ToolName, Version: cfg.ToolVersion, Configuration: cfg.ToolConfiguration}
	return out, stats, nil
}

// writeLayer writes a layer's catalog s into lc under key, in the
// background; Close waits for it. The SBOM's encodings, which may run
// meanwhile, only read the catalog too.
func (c *Cataloger) writeLayer(lc Cache, key string, s *syftsbom.SBOM) {
	c.writes.Go(func() {
		lc.Write(key, func(w io.Writer) error { return encodeLayer(w, s) }) //nolint:errcheck // a cache that cannot be written only costs the next release time
	})
}

// CachedLayers says, for each layer of an image with these diff IDs (the
// config's, bottom first), whether lc holds its catalog: such a layer is
// not cataloged again, so its file tree is all the SBOM reads of it (see
// ErrOutlined).
//
// When an image on the same lower layers (all but the top one) had to be
// cataloged whole, the SBOM needs every layer in full: none is reported.
func CachedLayers(diffIDs []v1.Hash, lc Cache) []bool {
	has := func(key string) bool { _, ok := lc.Get(key); return ok }
	if h, ok := lc.(interface{ Has(key string) bool }); ok {
		has = h.Has
	}
	out := make([]bool, len(diffIDs))
	keys := make([]string, len(diffIDs))
	chain := ""
	for i, d := range diffIDs {
		chain = chainID(chain, d.String())
		keys[i] = layerKey(chain)
		out[i] = has(keys[i])
	}
	if len(keys) > 1 && has(wholeKey(keys[len(keys)-2])) {
		clear(out)
	}
	return out
}

// wholeKey marks the lower layers (whose top layer's catalog is layerKey)
// of an image that had to be cataloged whole.
func wholeKey(layerKey string) string { return layerKey + "/whole-above" }

// layerKey names the catalog of the layer whose chain ID is chain.
func layerKey(chain string) string { return "syft/" + syftVersion() + "/" + layerSchema + "/" + chain }

// cachedLayers are the layer catalogs the cache holds for an image, read
// and decoded (which takes longer than indexing a layer of a few thousand
// files) while stereoscope indexes the layers.
type cachedLayers struct {
	done  chan struct{}
	sboms map[string]*syftsbom.SBOM // by layerKey
}

// readCachedLayers starts reading the cached catalogs of img's layers, by
// the chain IDs of the diff IDs its config claims (Unpack checked them).
func readCachedLayers(img v1.Image, lc Cache) *cachedLayers {
	p := &cachedLayers{done: make(chan struct{}), sboms: map[string]*syftsbom.SBOM{}}
	cf, err := img.ConfigFile()
	if err != nil || cf == nil {
		close(p.done)
		return p
	}
	diffIDs := cf.RootFS.DiffIDs
	go func() {
		defer close(p.done)
		chain := ""
		for _, d := range diffIDs {
			chain = chainID(chain, d.String())
			if s := decodeLayer(lc, layerKey(chain)); s != nil {
				p.sboms[layerKey(chain)] = s
			}
		}
	}()
	return p
}

// holds says whether the catalog of key was read ahead.
func (p *cachedLayers) holds(key string) bool {
	if p == nil {
		return false
	}
	<-p.done
	_, ok := p.sboms[key]
	return ok
}

// layerKeys are the layer cache's keys of layers, bottom first: their
// chain IDs (see catalogLayers).
func layerKeys(layers []*image.Layer) []string {
	keys := make([]string, len(layers))
	chain := ""
	for i, l := range layers {
		chain = chainID(chain, l.Metadata.Digest)
		keys[i] = layerKey(chain)
	}
	return keys
}

// get is the catalog of key: read ahead, or else from lc.
func (p *cachedLayers) get(key string, lc Cache) *syftsbom.SBOM {
	if p != nil {
		<-p.done
		if s, ok := p.sboms[key]; ok {
			return s
		}
	}
	return decodeLayer(lc, key)
}

// encodeLayer writes a layer's catalog as syft's JSON document, which
// decodeLayer reads. It streams the document, where syft's encoder (and
// encoding/json's) holds it whole and copies it once more: with those two
// copies of a 10,000-file layer's catalog, a cold release peaked 27 MB
// higher.
func encodeLayer(w io.Writer, s *syftsbom.SBOM) error {
	doc := syftjson.ToFormatModel(*s, syftjson.DefaultEncoderConfig())
	return jsonv2.MarshalWrite(w, &doc, json.DefaultOptionsV1(), jsontext.EscapeForHTML(false))
}

func decodeLayer(lc Cache, key string) *syftsbom.SBOM {
	b, ok := lc.Get(key)
	if !ok {
		return nil
	}
	s, _, _, err := syftjson.NewFormatDecoder().Decode(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	return s
}

// merge combines the layers' catalogs (bottom first) into the image's; see
// catalogLayers. whole resolves paths in the image's file system. It is
// false when the merge would not be what syft finds in the whole image: a
// layer saw another Linux distribution; a cataloger that relates packages
// across files (not selfContained) has packages in several layers; an ELF
// package-note binary imports shared libraries (syft relates it to the
// libraries' packages anywhere in the image); or an OS package owns the
// file of a binary package from another layer (syft drops such a binary
// package).
func merge(layers []*syftsbom.SBOM, si *image.Image, whole file.Resolver) (*syftsbom.SBOM, bool) {
	top := layers[len(layers)-1]
	out := &syftsbom.SBOM{Artifacts: syftsbom.Artifacts{
		Packages:          pkg.NewCollection(),
		FileMetadata:      map[file.Coordinates]file.Metadata{},
		FileDigests:       map[file.Coordinates][]file.Digest{},
		FileContents:      map[file.Coordinates]string{},
		FileLicenses:      map[file.Coordinates][]file.License{},
		Executables:       map[file.Coordinates]file.Executable{},
		Unknowns:          map[file.Coordinates][]string{},
		LinuxDistribution: top.Artifacts.LinuxDistribution,
	}}
	// visible is the layer whose file the image shows at a path ("" for
	// none: deleted, or never there).
	seen := map[string]string{}
	visible := func(path string) string {
		if l, ok := seen[path]; ok {
			return l
		}
		l := ""
		if locs, err := whole.FilesByPath(path); err == nil && len(locs) > 0 {
			l = locs[0].FileSystemID
		}
		seen[path] = l
		return l
	}
	shown := func(c file.Coordinates) bool { return visible(c.RealPath) == c.FileSystemID }
	kept := map[artifact.ID]bool{}
	spans := map[string]map[int]bool{} // cataloger → layers its kept packages come from
	var binaries []pkg.Package         // kept binary packages, with their layer in layerOf
	layerOf := map[artifact.ID]int{}
	for i, s := range layers {
		layer := si.Layers[i].Metadata.Digest
		n := 0
		for p := range s.Artifacts.Packages.Enumerate() {
			if !fromLayer(p, layer, i == len(layers)-1, shown) {
				continue
			}
			if len(layers) > 1 && linksLibraries(p, s) {
				return nil, false
			}
			out.Artifacts.Packages.Add(p)
			kept[p.ID()] = true
			layerOf[p.ID()] = i
			if spans[p.FoundBy] == nil {
				spans[p.FoundBy] = map[int]bool{}
			}
			spans[p.FoundBy][i] = true
			if p.Type == pkg.BinaryPkg {
				binaries = append(binaries, p)
			}
			n++
		}
		if n > 0 && !sameRelease(s.Artifacts.LinuxDistribution, top.Artifacts.LinuxDistribution) {
			return nil, false
		}
		copyShown(out.Artifacts.FileMetadata, s.Artifacts.FileMetadata, shown)
		copyShown(out.Artifacts.FileDigests, s.Artifacts.FileDigests, shown)
		copyShown(out.Artifacts.FileContents, s.Artifacts.FileContents, shown)
		copyShown(out.Artifacts.FileLicenses, s.Artifacts.FileLicenses, shown)
		copyShown(out.Artifacts.Executables, s.Artifacts.Executables, shown)
		copyShown(out.Artifacts.Unknowns, s.Artifacts.Unknowns, shown)
	}
	// syft relates packages of one cataloger across files (Python's
	// Requires-Dist, dpkg's status.d, Perl...): a layer's catalog cannot see
	// another layer's side of such a relationship.
	for c, ls := range spans {
		if len(ls) > 1 && !selfContained(c) {
			return nil, false
		}
	}
	// syft drops a binary package whose file an OS package owns; a layer's
	// catalog cannot see an owner in another layer.
	if ownedElsewhere(out.Artifacts.Packages, binaries, layerOf) {
		return nil, false
	}
	// Relationships between what was kept; each layer's catalog named its
	// own view of the image as the source, which is now the image.
	have := map[string]bool{}
	for _, s := range layers {
		for _, r := range s.Relationships {
			if !endpointKept(r.From, kept, shown) || !endpointKept(r.To, kept, shown) {
				continue
			}
			k := string(r.From.ID()) + "\x00" + string(r.To.ID()) + "\x00" + string(r.Type)
			if !have[k] {
				have[k] = true
				out.Relationships = append(out.Relationships, r)
			}
		}
	}
	return out, true
}

// selfContained says whether a cataloger's packages, and the relationships
// between them, come from one file each (a binary, an archive, a package's
// manifest), so that they may come from several layers. Any other
// cataloger whose packages span layers makes the image cataloged whole.
func selfContained(cataloger string) bool {
	switch cataloger {
	case "binary-classifier-cataloger", "go-module-binary-cataloger", "java-archive-cataloger", "java-jvm-cataloger",
		"javascript-package-cataloger", "php-composer-installed-cataloger", "cargo-auditable-binary-cataloger",
		"ruby-installed-gemspec-cataloger", "dotnet-deps-binary-cataloger", "dotnet-portable-executable-cataloger",
		"pe-binary-package-cataloger":
		return true
	}
	return false
}

// linksLibraries says whether syft relates p to the packages of the shared
// libraries its binary imports (ELF package notes), which it finds in the
// whole file system.
func linksLibraries(p pkg.Package, s *syftsbom.SBOM) bool {
	if _, ok := p.Metadata.(pkg.ELFBinaryPackageNoteJSONPayload); !ok {
		return false
	}
	for _, l := range p.Locations.ToSlice() {
		if e, ok := s.Artifacts.Executables[l.Coordinates]; ok && len(e.ImportedLibraries) > 0 {
			return true
		}
	}
	return false
}

// ownedElsewhere says whether an OS package owns the evidence of a binary
// package kept from another layer.
func ownedElsewhere(all *pkg.Collection, binaries []pkg.Package, layerOf map[artifact.ID]int) bool {
	if len(binaries) == 0 {
		return false
	}
	owner := map[string]int{} // path → layer of an OS package owning it
	for p := range all.Enumerate() {
		fo, ok := p.Metadata.(pkg.FileOwner)
		if !ok || p.Type == pkg.BinaryPkg {
			continue
		}
		for _, f := range fo.OwnedFiles() {
			owner[f] = layerOf[p.ID()]
		}
	}
	for _, b := range binaries {
		for _, l := range b.Locations.ToSlice() {
			if ol, ok := owner[l.RealPath]; ok && ol != layerOf[b.ID()] {
				return true
			}
		}
	}
	return false
}

// fromLayer says whether p, found in the catalog of layer, belongs to the
// image's catalog: its primary evidence (else all its locations) is in
// that layer and is what the image shows there. A package without
// locations is taken from the top layer's catalog.
func fromLayer(p pkg.Package, layer string, isTop bool, shown func(file.Coordinates) bool) bool {
	locs := p.Locations.ToSlice()
	var primary []file.Location
	for _, l := range locs {
		if l.Annotations[pkg.EvidenceAnnotationKey] == pkg.PrimaryEvidenceAnnotation {
			primary = append(primary, l)
		}
	}
	if len(primary) == 0 {
		primary = locs
	}
	if len(primary) == 0 {
		return isTop
	}
	for _, l := range primary {
		if l.FileSystemID != layer || !shown(l.Coordinates) {
			return false
		}
	}
	return true
}

func endpointKept(n artifact.Identifiable, kept map[artifact.ID]bool, shown func(file.Coordinates) bool) bool {
	switch v := n.(type) {
	case pkg.Package:
		return kept[v.ID()]
	case *pkg.Package:
		return kept[v.ID()]
	case file.Coordinates:
		return shown(v)
	case file.Location:
		return shown(v.Coordinates)
	default:
		return false // the layer's own view as a source: the encoders describe the image themselves
	}
}

func copyShown[V any](dst, src map[file.Coordinates]V, shown func(file.Coordinates) bool) {
	for c, v := range src {
		if shown(c) {
			dst[c] = v
		}
	}
}

func sameRelease(a, b *linux.Release) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ID == b.ID && a.VersionID == b.VersionID && a.Version == b.Version
}

// chainID is the OCI chain ID of a layer over the chain under it.
func chainID(parent, diffID string) string {
	if parent == "" {
		return diffID
	}
	sum := sha256.Sum256([]byte(parent + " " + diffID))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// syftVersion is the version of the syft library linked.
func syftVersion() string { return moduleVersion("github.com/anchore/syft") }

// moduleVersion is the version of the module at path this program was
// built with.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return "unknown"
}

// layerSource is the image up to one layer, whose searches (by glob, MIME
// type, or all locations) find only the files that layer adds or changes;
// reads by path see the whole file system up to the layer.
type layerSource struct {
	source.Source
	layer string
}

func (s layerSource) FileResolver(scope source.Scope) (file.Resolver, error) {
	r, err := s.Source.FileResolver(scope)
	if err != nil {
		return nil, err
	}
	return layerResolver{Resolver: r, layer: s.layer}, nil
}

type layerResolver struct {
	file.Resolver
	layer string
}

func (r layerResolver) only(locs []file.Location, err error) ([]file.Location, error) {
	return slices.DeleteFunc(locs, func(l file.Location) bool { return l.FileSystemID != r.layer }), err
}

// FilesByGlob searches the layer's files; a pattern without wildcards is a
// lookup by path (syft reads /etc/debian_version so), which sees the whole
// file system up to the layer.
func (r layerResolver) FilesByGlob(patterns ...string) ([]file.Location, error) {
	var search, lookup []string
	for _, p := range patterns {
		if strings.ContainsAny(p, "*?[{\\") {
			search = append(search, p)
		} else {
			lookup = append(lookup, p)
		}
	}
	var out []file.Location
	if len(search) > 0 {
		locs, err := r.only(r.Resolver.FilesByGlob(search...))
		if err != nil {
			return nil, err
		}
		out = locs
	}
	if len(lookup) > 0 {
		locs, err := r.Resolver.FilesByGlob(lookup...)
		if err != nil {
			return nil, err
		}
		for _, l := range locs {
			if !slices.ContainsFunc(out, func(o file.Location) bool { return o.Coordinates == l.Coordinates && o.AccessPath == l.AccessPath }) {
				out = append(out, l)
			}
		}
	}
	return out, nil
}

func (r layerResolver) FilesByMIMEType(types ...string) ([]file.Location, error) {
	return r.only(r.Resolver.FilesByMIMEType(types...))
}

func (r layerResolver) AllLocations(ctx context.Context) <-chan file.Location {
	out := make(chan file.Location)
	go func() {
		defer close(out)
		for l := range r.Resolver.AllLocations(ctx) {
			if l.FileSystemID != r.layer {
				continue
			}
			select {
			case out <- l:
			case <-ctx.Done(): // keep draining: the resolver's sender ends on its own
			}
		}
	}()
	return out
}
