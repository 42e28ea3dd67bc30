package scan

import (
	"context"
	"fmt"
	"strings"

	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	artimage "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	fimage "github.com/aquasecurity/trivy/pkg/fanal/image"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	// trivy registers its analyzers and OS/language detectors through init();
	// this import set is what `trivy image` links.
	_ "github.com/aquasecurity/trivy/pkg/fanal/analyzer/all"
	_ "github.com/aquasecurity/trivy/pkg/fanal/handler/all"
)

// Image scans img, which lotse has already opened (and, for registry
// sources, copied to disk once). name is the reference reports show.
func (s *Scanner) Image(ctx context.Context, img v1.Image, name string, opts Options) (*Result, error) {
	c := newLayerCache(opts.Layers, JavaDBDir(s.cfg.CacheDir), s.noJavaDB)
	art, err := artimage.NewArtifact(namedImage{Image: img, name: name, tags: opts.RepoTags, digests: opts.RepoDigests}, c, artifact.Option{
		DisabledAnalyzers: vulnOnlyDisabledAnalyzers(),
		Offline:           s.cfg.Offline,
		NoProgress:        true,
		Parallel:          5,
	})
	if err != nil {
		return nil, fmt.Errorf("prepare image analysis: %w", err)
	}
	res, err := s.run(ctx, art, c, opts)
	if err != nil {
		if strings.Contains(err.Error(), "Unable to initialize the Java DB") {
			// trivy's message names neither the repositories nor the way out.
			return nil, fmt.Errorf("the image's Java archives need the Java DB (from %v, kept in %s; --java-db-repository names a mirror of trivy's): %w",
				s.javaRepositoryNames(), JavaDBDir(s.cfg.CacheDir), err)
		}
		return nil, err
	}
	res.Layers = LayerStats{Cached: c.hits, Analysed: c.analysed}
	if c.putErr != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the layer cache was not updated: %v", c.putErr))
	}
	if s.noJavaDB {
		n, some, err := javaArchives(img)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			res.Warnings = append(res.Warnings, s.noJavaDBWarning("the image", n, some))
		}
	}
	return res, nil
}

// vulnOnlyDisabledAnalyzers mirrors what `trivy image --scanners vuln`
// switches off: lock files and manifests (go.mod, package-lock.json,
// requirements.txt, pom.xml...: sources left in an image, not what is
// installed; trivy image reads installed packages only), secrets,
// misconfigurations, licenses, image history, executables, removed apk
// packages and RPM archives. It also switches off what trivy image runs
// but lotse has no use for: the licenses of Debian packages, from their
// copyright files (lotse reports vulnerabilities; the SBOM carries the
// licenses).
func vulnOnlyDisabledAnalyzers() []analyzer.Type {
	var ts []analyzer.Type
	ts = append(ts, analyzer.TypeApkCommand, analyzer.TypeSecret, analyzer.TypeLicenseFile, analyzer.TypeDpkgLicense,
		analyzer.TypeHistoryDockerfile, analyzer.TypeExecutable, analyzer.TypeRpmArchive)
	ts = append(ts, analyzer.TypeLockfiles...)
	ts = append(ts, analyzer.TypeConfigFiles...)
	return ts
}

// namedImage gives a v1.Image the names trivy's image artifact records.
type namedImage struct {
	v1.Image
	name          string
	tags, digests []string
}

func (i namedImage) Name() string          { return i.name }
func (i namedImage) ID() (string, error)   { return fimage.ID(i.Image) }
func (i namedImage) RepoTags() []string    { return i.tags }
func (i namedImage) RepoDigests() []string { return i.digests }

// RegistryNames are the names trivy records for an image it reads from a
// registry by ref, whose manifest (or index) has digest: the tag, and the
// digest, each in the image's repository ("alpine" on Docker Hub,
// "registry.example.com/team/app" elsewhere). A report names the image by
// them (Metadata.RepoTags, RepoDigests, Reference), and identifies it by
// its ID in that repository (ArtifactID), from which each finding's
// Fingerprint is made: given these, lotse's reports carry the identifiers
// trivy's would.
func RegistryNames(ref name.Reference, digest v1.Hash) (tags, digests []string) {
	repo := ref.Context().RegistryStr() + "/" + ref.Context().RepositoryStr()
	if ref.Context().RegistryStr() == name.DefaultRegistry {
		repo = strings.TrimPrefix(ref.Context().RepositoryStr(), "library/")
	}
	tags = []string{}
	if t, ok := ref.(name.Tag); ok {
		tags = []string{repo + ":" + t.TagStr()}
	}
	return tags, []string{repo + "@" + digest.String()}
}
