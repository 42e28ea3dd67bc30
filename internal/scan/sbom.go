package scan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/sbom"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/samber/lo"
)

// SBOM scans the packages an SBOM lists (CycloneDX or SPDX, JSON). name is
// what reports show for it.
//
// trivy's own SBOM decoding loses which source package a binary package was
// built from when the SBOM was not written by trivy: libssl3 is then looked up
// as "libssl3" instead of "openssl", and the openssl advisories are missed.
// syft (and so lotse) records the source in the package URL's "upstream"
// qualifier; SBOM restores it from there before matching. It also restores
// what trivy's image analysis records and its SBOM decoding drops: the file
// of each language package (restorePaths) and the names of jars trivy
// identifies by SHA-1 in its Java DB (resolveJars), so that the findings
// and their files are those of `trivy image` on the image.
func (s *Scanner) SBOM(ctx context.Context, r io.Reader, name string, opts Options) (*Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read SBOM: %w", err)
	}
	format, err := sbom.DetectFormat(bytes.NewReader(data))
	if err != nil || format == sbom.FormatUnknown {
		return nil, fmt.Errorf("read SBOM %s: not a CycloneDX or SPDX document", name)
	}
	bom, err := sbom.Decode(ctx, bytes.NewReader(data), format)
	if err != nil {
		return nil, fmt.Errorf("read SBOM %s: %w", name, err)
	}
	for i := range bom.Packages {
		restoreSource(&bom.Packages[i].Packages)
	}
	facts := syftFacts(data)
	unkey := func() {}
	if format == sbom.FormatSPDXJSON {
		facts = spdxFacts(data)
		unkey = keySPDXPackages(&bom, facts)
	}
	restorePaths(&bom, facts)
	restoreRepositories(&bom, facts)
	dropSystemInstalled(&bom, facts)
	looked, err := resolveJars(&bom, facts, openJavaDB)
	unkey()
	if err != nil {
		return nil, fmt.Errorf("read SBOM %s: %w", name, err)
	}
	if bom.Metadata.OS == nil {
		// syft's SPDX documents carry no operating-system element; the OS
		// packages' purls name it in their "distro" qualifier.
		bom.Metadata.OS = osFromPackages(bom.Packages)
	}
	blob := ftypes.BlobInfo{
		SchemaVersion: ftypes.BlobJSONSchemaVersion,
		OS:            lo.FromPtr(bom.Metadata.OS),
		PackageInfos:  bom.Packages,
		Applications:  bom.Applications,
	}
	c := cache.NewMemoryCache()
	art := &sbomArtifact{name: name, blob: blob, cache: c, bom: bom, format: format}
	res, err := s.run(ctx, art, c, opts)
	if err != nil {
		return nil, err
	}
	if s.noJavaDB && len(looked) > 0 {
		some := looked[:min(len(looked), 3)]
		for i, p := range some {
			some[i] = printable(p) // the SBOM names them: no lines of its own in lotse's output
		}
		res.Warnings = append(res.Warnings, s.noJavaDBWarning("the SBOM", len(looked), some))
	}
	return res, nil
}

// restoreSource fills the source package of OS packages from the purl's
// upstream qualifier: "openssl" or, when the source version differs,
// "openssl@3.0.11-1~deb12u2".
func restoreSource(pkgs *ftypes.Packages) {
	for i := range *pkgs {
		p := &(*pkgs)[i]
		if p.Identifier.PURL == nil {
			continue
		}
		up := p.Identifier.PURL.Qualifiers.Map()["upstream"]
		if up == "" {
			continue
		}
		src, ver, hasVer := strings.Cut(up, "@")
		// trivy's decoder defaulted the source to the binary package itself;
		// anything it read from trivy's own properties differs and wins.
		if p.SrcName != "" && p.SrcName != p.Name {
			continue
		}
		p.SrcName = src
		if hasVer && ver != "" {
			setSrcVersion(p, ver)
		}
	}
}

// osFromPackages reads the OS from the first OS package purl with a
// "distro" qualifier such as debian-12.5 or alpine-3.20.3.
func osFromPackages(infos []ftypes.PackageInfo) *ftypes.OS {
	for _, info := range infos {
		for _, p := range info.Packages {
			if p.Identifier.PURL == nil {
				continue
			}
			d := p.Identifier.PURL.Qualifiers.Map()["distro"]
			i := strings.LastIndexByte(d, '-')
			if i <= 0 || i == len(d)-1 {
				continue
			}
			return &ftypes.OS{Family: ftypes.OSType(d[:i]), Name: d[i+1:]}
		}
	}
	return nil
}

// setSrcVersion splits a Debian/RPM style [epoch:]version[-release].
func setSrcVersion(p *ftypes.Package, v string) {
	p.SrcEpoch = 0
	if e, rest, ok := strings.Cut(v, ":"); ok {
		var n int
		if _, err := fmt.Sscanf(e, "%d", &n); err == nil {
			p.SrcEpoch, v = n, rest
		}
	}
	p.SrcVersion, p.SrcRelease = v, ""
	if i := strings.LastIndexByte(v, '-'); i > 0 && p.Release != "" {
		p.SrcVersion, p.SrcRelease = v[:i], v[i+1:]
	}
}

type sbomArtifact struct {
	name   string
	blob   ftypes.BlobInfo
	cache  *cache.MemoryCache
	bom    types.SBOM
	format sbom.Format
}

func (a *sbomArtifact) Inspect(ctx context.Context) (artifact.Reference, error) {
	b, err := json.Marshal(a.blob)
	if err != nil {
		return artifact.Reference{}, fmt.Errorf("encode SBOM packages: %w", err)
	}
	sum := sha256.Sum256(b)
	key := "sha256:" + hex.EncodeToString(sum[:])
	if err := a.cache.PutBlob(ctx, key, a.blob); err != nil {
		return artifact.Reference{}, err
	}
	typ := ftypes.TypeCycloneDX
	if strings.Contains(string(a.format), "spdx") {
		typ = ftypes.TypeSPDX
	}
	return artifact.Reference{
		Name:    a.name,
		Type:    typ,
		ID:      key,
		BlobIDs: []string{key},
		ImageMetadata: artifact.ImageMetadata{
			ID:          a.bom.Metadata.ImageID,
			DiffIDs:     a.bom.Metadata.DiffIDs,
			RepoTags:    a.bom.Metadata.RepoTags,
			RepoDigests: a.bom.Metadata.RepoDigests,
			Reference:   a.bom.Metadata.Reference,
		},
	}, nil
}

func (a *sbomArtifact) Clean(ref artifact.Reference) error {
	return a.cache.DeleteBlobs(context.Background(), ref.BlobIDs)
}
