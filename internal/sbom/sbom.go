// Package sbom writes software bills of materials for container images with
// the syft library, in the formats GitLab and the supply-chain tools read:
// CycloneDX JSON, SPDX JSON and syft JSON.
package sbom

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/CycloneDX/cyclonedx-go"
	"github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/cataloging"
	"github.com/anchore/syft/syft/cataloging/filecataloging"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/common/spdxhelpers"
	"github.com/anchore/syft/syft/format/cyclonedxjson"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/pkg"
	"github.com/anchore/syft/syft/pkg/cataloger/common/cpe"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
	"github.com/anchore/syft/syft/source/stereoscopesource"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spdx/tools-golang/convert"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"

	// syft's RPM cataloger reads newer rpmdb files through database/sql and
	// needs a driver registered; modernc's is pure Go.
	_ "modernc.org/sqlite"
)

// Format is an SBOM document format.
type Format string

// The formats lotse writes.
const (
	CycloneDXJSON Format = "cyclonedx-json" // what GitLab's artifacts:reports:cyclonedx reads
	SPDXJSON      Format = "spdx-json"
	SyftJSON      Format = "syft-json"
)

// CycloneDXSpecVersion is the CycloneDX spec version lotse writes. syft's
// default (1.7) is newer than what GitLab's artifacts:reports:cyclonedx
// reads (1.4 to 1.6), so lotse pins the newest version GitLab takes; the
// tests validate the output against that version's published schema.
const CycloneDXSpecVersion = "1.6"

const cyclonedxSpec = cyclonedx.SpecVersion1_6 // CycloneDXSpecVersion

// Formats lists the formats in the order help texts show them.
var Formats = []Format{CycloneDXJSON, SPDXJSON, SyftJSON}

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	f := Format(s)
	if !slices.Contains(Formats, f) {
		names := make([]string, len(Formats))
		for i, f := range Formats {
			names[i] = string(f)
		}
		return "", fmt.Errorf("unknown SBOM format %q (want one of %s)", s, strings.Join(names, ", "))
	}
	return f, nil
}

// PredicateType is the in-toto predicate type of an attestation carrying the
// SBOM in this format, as cosign names them.
func (f Format) PredicateType() string {
	switch f {
	case CycloneDXJSON:
		return "https://cyclonedx.org/bom"
	case SPDXJSON:
		return "https://spdx.dev/Document"
	default:
		return "https://syft.dev/bom"
	}
}

// SBOM is the bill of materials of one image.
type SBOM struct {
	s        *syftsbom.SBOM
	layers   LayerStats
	licenses LicenseStats
	// installed maps a package to the OS packages that installed its
	// file (see installedBy); CycloneDX records it.
	installed map[artifact.ID][]artifact.ID
}

// Licenses says how many license texts were answered from the layer cache
// and how many were scanned while the image was cataloged.
func (s *SBOM) Licenses() LicenseStats { return s.licenses }

// Layers says how many of the image's layers were cataloged and how many
// were read from the layer cache.
func (s *SBOM) Layers() LayerStats { return s.layers }

// Tool names the program that writes the SBOM (lotse and its version).
type Tool struct{ Name, Version string }

// Cataloger writes SBOMs. Close it when done.
type Cataloger struct {
	tool     Tool
	licenses *licenseScanner
	lic      context.Context // carries syft's license scanner, scanning through licenses
	err      error
	removals sync.WaitGroup // of unpacked layers
	writes   sync.WaitGroup // of layer catalogs into the layer cache
	followed layerIndexes   // layers indexed as they were unpacked (FollowLayer)
}

// Option configures a Cataloger.
type Option func(*cataloger)

type cataloger struct {
	cache  Cache
	window func(<-chan struct{})
}

// WithLicenseCache keeps what syft's license scanner finds in a text in
// cache (the layer cache), by the text's SHA-256: the scanner is built only
// for a text the cache does not hold (see licenses.go).
func WithLicenseCache(cache Cache) Option {
	return func(o *cataloger) { o.cache = cache }
}

// WithBuildWindow calls f as the license scanner starts compiling (when
// lotse's snapshot of it does not fit the licensecheck linked), with a
// channel closed when it is built. Compiling makes 300 MB of short-lived
// garbage; a command relaxes the collector for that window.
func WithBuildWindow(f func(built <-chan struct{})) Option {
	return func(o *cataloger) { o.window = f }
}

// NewCataloger prepares a cataloger for tool. syft's license scanner is
// built when a text the license cache does not hold is scanned, or ahead
// (see Foresee).
func NewCataloger(tool Tool, opts ...Option) *Cataloger {
	var o cataloger
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cataloger{tool: tool, licenses: newLicenseScanner(o.cache, o.window)}
	c.lic, c.err = c.licenses.context(syft.DefaultCreateSBOMConfig().Licenses.Coverage)
	return c
}

// Generate catalogs the packages of img. ref is the name the SBOM records for
// the image (the source reference as the user gave it); tmpDir receives the
// unpacked layers and is the caller's to remove.
func Generate(ctx context.Context, img v1.Image, ref string, tool Tool, tmpDir string) (*SBOM, error) {
	c := NewCataloger(tool)
	defer c.Close()
	return c.Generate(ctx, img, ref, tmpDir, nil)
}

// Generate catalogs the packages of img; see the function Generate. With a
// layer cache, the image is cataloged one layer at a time and the layers
// found in the cache are not cataloged again (see catalogLayers). The
// unpacked layers are removed in the background once it returns; Close
// waits for that.
func (c *Cataloger) Generate(ctx context.Context, img v1.Image, ref string, tmpDir string, layers Cache) (*SBOM, error) {
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return nil, fmt.Errorf("layer directory: %w", err)
	}
	si := image.New(img, file.NewTempDirGenerator("lotse-sbom"), tmpDir)
	release := func() {}
	c.removals.Add(1)
	defer func() {
		go func() {
			defer c.removals.Done()
			si.Cleanup() //nolint:errcheck // best effort: the directories are temporary
			release()
		}()
	}()
	var pre *cachedLayers
	if layers != nil {
		c.writes.Wait() // what an earlier Generate still writes is read, not cataloged again
		pre = readCachedLayers(img, layers)
	}
	// The squashed trees syft reads: with a layer cache, those of the
	// layers it catalogs (the ones whose catalogs the cache does not
	// hold) and the top layer's; without, only the top layer's (the image
	// is cataloged whole).
	reads := func(int) bool { return false }
	if layers != nil {
		var keys []string // si's, once readImage has read its layers
		reads = func(i int) bool {
			if keys == nil {
				keys = layerKeys(si.Layers)
			}
			return !pre.holds(keys[i])
		}
	}
	top, rel, err := c.readImage(ctx, si, img, tmpDir, reads)
	if errors.Is(err, errIndexFallback) {
		top, rel, err = func() error { return nil }, func() {}, si.Read(ctx)
	}
	release = rel
	if err != nil {
		return nil, fmt.Errorf("read image layers: %w", err)
	}
	diffIDs := make([]string, len(si.Layers))
	for i, l := range si.Layers {
		diffIDs[i] = l.Metadata.Digest
	}
	guard := newOutlineGuard(img, diffIDs)
	before := c.licenses.stats()
	src := stereoscopesource.New(si, stereoscopesource.ImageConfig{Reference: ref})
	cfg := c.config()
	var (
		s     *syftsbom.SBOM
		stats LayerStats
	)
	switch {
	case layers != nil:
		s, stats, err = c.catalogLayers(ctx, si, top, ref, cfg, layers, pre, guard)
	case guard != nil:
		// Cataloged whole, an outlined layer would be searched too.
		err = fmt.Errorf("%w: no layer cache", ErrOutlined)
	default:
		stats = LayerStats{Cataloged: len(si.Layers), Whole: true}
		if err = top(); err != nil {
			break
		}
		topSearch(si)
		if s, err = c.catalog(ctx, src, cfg, nil); err != nil {
			err = fmt.Errorf("catalog packages: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	c.licenses.cataloged()
	now := c.licenses.stats()
	lic := LicenseStats{Cached: now.Cached - before.Cached, Scanned: now.Scanned - before.Scanned, Built: now.Built}
	return &SBOM{s: s, layers: stats, licenses: lic, installed: installedBy(s, layerFiles(si))}, nil
}

// config is what syft catalogs with: what syft's command line (syft scan)
// catalogs with by default, where its library's defaults differ. Each
// file an OS package owns gets its SHA-1 and SHA-256, not SHA-256 alone;
// and the unknowns (in syft's JSON only) include the executables no
// package was found in and the archives not cataloged. The command line
// keeps a file's cataloging errors among them even when a package was
// found in the file: its remove-when-packages-defined setting does not
// reach the library (syft v1.54.1's ToUnknownsConfig), so neither does it
// here. TestSBOMIsSyftCLIs compares both with syft's command line.
func (c *Cataloger) config() *syft.CreateSBOMConfig {
	unknowns := cataloging.DefaultUnknownsConfig()
	unknowns.RemoveWhenPackagesDefined = false
	return syft.DefaultCreateSBOMConfig().
		WithTool(c.tool.Name, c.tool.Version).
		WithFilesConfig(filecataloging.DefaultConfig().WithHashers(crypto.SHA1, crypto.SHA256)).
		WithUnknownsConfig(unknowns)
}

// catalog runs syft on src with the license scanner. Loading syft's CPE
// dictionary (which syft would otherwise do while cataloging) happens
// first, while the scanner may still be building. syft cannot be told
// during a scan that the scanner failed to build, so catalog asks after.
func (c *Cataloger) catalog(ctx context.Context, src source.Source, cfg *syft.CreateSBOMConfig, guard *outlineGuard) (*syftsbom.SBOM, error) {
	cpe.DictionaryFind(pkg.Package{})
	if c.err != nil {
		return nil, fmt.Errorf("license scanner: %w", c.err)
	}
	s, err := syft.CreateSBOM(withValues(ctx, c.lic), copyingSource{Source: src, guard: guard}, cfg)
	if err == nil {
		err = c.licenses.failed()
	}
	// A cataloger that could not read a file goes on without it: the
	// guard's record says whether that was a file an outline left out.
	if gerr := guard.err(); gerr != nil {
		return nil, gerr
	}
	return s, err
}

// Close waits until the layer catalogs of every SBOM generated are in the
// layer cache and their unpacked layers removed, and closes the layers
// indexed for an SBOM that was never generated (FollowLayer).
func (c *Cataloger) Close() {
	c.writes.Wait()
	c.removals.Wait()
	c.closeFollowed()
}

// withValues is ctx (its deadline and cancellation) that also answers the
// values of vals: syft finds the prepared license scanner there.
func withValues(ctx, vals context.Context) context.Context {
	return valuesCtx{Context: ctx, vals: vals}
}

type valuesCtx struct {
	context.Context
	vals context.Context
}

func (c valuesCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.vals.Value(key)
}

// Encode writes the SBOM in format f.
func (s *SBOM) Encode(w io.Writer, f Format) error {
	var (
		enc syftsbom.FormatEncoder
		err error
	)
	switch f {
	case CycloneDXJSON:
		// syft's encoder, with lotse's property added (see installedBy).
		if err := encodeCycloneDX(w, s.cycloneDXModel()); err != nil {
			return fmt.Errorf("encode %s SBOM: %w", f, err)
		}
		return nil
	case SPDXJSON:
		// syft's encoder (SPDX 2.3, as spdxjson's default), with lotse's
		// annotation added (see installedBy).
		var doc v2_3.Document
		if err := convert.Document(spdxhelpers.ToFormatModel(*s.s), &doc); err != nil {
			return fmt.Errorf("encode %s SBOM: %w", f, err)
		}
		annotateSPDX(&doc, s.s, s.installed)
		e := json.NewEncoder(w)
		e.SetEscapeHTML(false)
		if err := e.Encode(doc); err != nil {
			return fmt.Errorf("encode %s SBOM: %w", f, err)
		}
		return nil
	case SyftJSON:
		enc, err = syftjson.NewFormatEncoderWithConfig(syftjson.DefaultEncoderConfig())
	default:
		_, err = ParseFormat(string(f))
	}
	if err != nil {
		return err
	}
	if err := enc.Encode(w, *s.s); err != nil {
		return fmt.Errorf("encode %s SBOM: %w", f, err)
	}
	return nil
}

// creditTools names the tools that made the SBOM. syft's encoder names the
// tool it was given (lotse) with syft's author, Anchore; lotse's SBOM
// names lotse without an author, and syft, the library that cataloged the
// image, beside it, with its version.
func creditTools(bom *cyclonedx.BOM, d syftsbom.Descriptor) {
	if d.Name == "syft" || bom.Metadata == nil || bom.Metadata.Tools == nil || bom.Metadata.Tools.Components == nil {
		return
	}
	tools := *bom.Metadata.Tools.Components
	for i := range tools {
		if tools[i].Name == d.Name && tools[i].Author == "anchore" {
			tools[i].Author = ""
		}
	}
	tools = append(tools, cyclonedx.Component{Type: cyclonedx.ComponentTypeLibrary, Author: "anchore", Name: "syft", Version: syftVersion()})
	bom.Metadata.Tools.Components = &tools
}

// Bytes encodes the SBOM in format f.
func (s *SBOM) Bytes(f Format) ([]byte, error) {
	var b bytes.Buffer
	if err := s.Encode(&b, f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Decode reads an SBOM in any format syft understands.
func Decode(r io.Reader) (*SBOM, Format, error) {
	s, id, _, err := format.Decode(r)
	if err != nil {
		return nil, "", fmt.Errorf("read SBOM: %w", err)
	}
	if s == nil {
		return nil, "", fmt.Errorf("read SBOM: unknown format")
	}
	var f Format
	switch id {
	case cyclonedxjson.ID:
		f = CycloneDXJSON
	case spdxjson.ID:
		f = SPDXJSON
	case syftjson.ID:
		f = SyftJSON
	default:
		f = Format(id)
	}
	return &SBOM{s: s}, f, nil
}

// Package is one cataloged package.
type Package struct {
	Name    string
	Version string
	Type    string // deb, apk, go-module, ...
	PURL    string
}

// Packages lists the packages, sorted by PURL.
func (s *SBOM) Packages() []Package {
	var out []Package
	for p := range s.s.Artifacts.Packages.Enumerate() {
		out = append(out, Package{Name: p.Name, Version: p.Version, Type: string(p.Type), PURL: p.PURL})
	}
	slices.SortFunc(out, func(a, b Package) int { return strings.Compare(a.PURL+a.Name, b.PURL+b.Name) })
	return out
}

// Counts returns the number of packages per type.
func (s *SBOM) Counts() map[string]int {
	m := map[string]int{}
	for p := range s.s.Artifacts.Packages.Enumerate() {
		m[string(p.Type)]++
	}
	return m
}

// Len is the number of packages.
func (s *SBOM) Len() int { return s.s.Artifacts.Packages.PackageCount() }
