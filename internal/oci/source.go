// Package oci reads and writes container images with go-containerregistry:
// registry references, OCI image layouts and docker archives in, any OCI
// registry (Harbor, GitLab's registry, distribution) out, always by digest.
package oci

import (
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Kind says where an image comes from.
type Kind int

const (
	// Registry is an image in a registry: host/repo:tag or host/repo@sha256:...
	Registry Kind = iota
	// Layout is an OCI image layout directory, as buildah, kaniko and skopeo write.
	Layout
	// Archive is a `docker save` tarball.
	Archive
)

// Source is a parsed image location. The forms are:
//
//	registry.example.com/group/app:1.2.3   a registry reference (tag or digest)
//	oci:DIR[:TAG]                          an OCI image layout directory
//	docker-archive:FILE.tar                a docker save archive
type Source struct {
	Kind Kind
	Ref  name.Reference // Registry only
	Path string         // Layout and Archive
	Tag  string         // Layout only: the org.opencontainers.image.ref.name to pick
	raw  string
}

// ParseSource parses an image location. insecure allows plain HTTP for
// registry references.
func ParseSource(s string, insecure bool) (Source, error) {
	if s == "" {
		return Source{}, fmt.Errorf("empty image reference")
	}
	switch {
	case strings.HasPrefix(s, "oci:"):
		dir, tag := strings.TrimPrefix(s, "oci:"), ""
		// The tag is after the last colon, unless that colon belongs to the path
		// (the directory itself exists under the full name).
		if i := strings.LastIndexByte(dir, ':'); i >= 0 {
			if _, err := os.Stat(dir); err != nil {
				dir, tag = dir[:i], dir[i+1:]
			}
		}
		if dir == "" {
			return Source{}, fmt.Errorf("bad image reference %q: oci: needs a directory", s)
		}
		return Source{Kind: Layout, Path: dir, Tag: tag, raw: s}, nil
	case strings.HasPrefix(s, "docker-archive:"):
		file := strings.TrimPrefix(s, "docker-archive:")
		if file == "" {
			return Source{}, fmt.Errorf("bad image reference %q: docker-archive: needs a file", s)
		}
		return Source{Kind: Archive, Path: file, raw: s}, nil
	}
	if i := strings.Index(s, ":"); i > 0 && !strings.ContainsAny(s[:i], "./") && strings.HasPrefix(s[i:], "://") {
		return Source{}, fmt.Errorf("bad image reference %q: drop the URL scheme", s)
	}
	ref, err := name.ParseReference(s, nameOptions(insecure)...)
	if err != nil {
		return Source{}, fmt.Errorf("bad image reference %q: %w", s, err)
	}
	return Source{Kind: Registry, Ref: ref, raw: s}, nil
}

// String returns the location as it was given.
func (s Source) String() string { return s.raw }

// ParseRepository parses a destination repository such as
// harbor.example.com/team/app. A tag or digest in it is an error: lotse
// publishes by digest and tags with --tag.
func ParseRepository(s string, insecure bool) (name.Repository, error) {
	if strings.Contains(s, "@") {
		return name.Repository{}, fmt.Errorf("bad repository %q: give the repository without a digest", s)
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "/") {
		// host:port/repo has a slash after the colon; repo:tag does not.
		return name.Repository{}, fmt.Errorf("bad repository %q: give the repository without a tag (use --tag)", s)
	}
	repo, err := name.NewRepository(s, nameOptions(insecure)...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("bad repository %q: %w", s, err)
	}
	return repo, nil
}

// ParseDigest parses repo@sha256:... and insists on the digest.
func ParseDigest(s string, insecure bool) (name.Digest, error) {
	d, err := name.NewDigest(s, nameOptions(insecure)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("bad image reference %q: want REPOSITORY@sha256:DIGEST: %w", s, err)
	}
	return d, nil
}

func nameOptions(insecure bool) []name.Option {
	if insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}
