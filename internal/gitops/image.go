package gitops

import (
	"fmt"
	"regexp"
	"strings"
)

// The grammar of github.com/distribution/reference, which registries and
// container runtimes share.
var (
	repositoryRE = regexp.MustCompile(`^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// ImageRef is an image reference as lotse promotes it: a repository, the tag
// it was built as (optional) and the digest that pins it. lotse promotes
// digests, never mutable tags, so a reference always has a digest.
type ImageRef struct {
	Repository string // registry host and path, e.g. harbor.example.com/team/shop
	Tag        string // e.g. 1.4.2; empty when unknown
	Digest     string // sha256:<64 lowercase hex>
}

// ParseImageRef parses repository@sha256:<hex> or repository:tag@sha256:<hex>.
func ParseImageRef(s string) (ImageRef, error) {
	name, digest, ok := strings.Cut(s, "@")
	if !ok {
		return ImageRef{}, fmt.Errorf("image reference %q has no digest; lotse promotes by digest (repository@sha256:...)", s)
	}
	if !digestRE.MatchString(digest) {
		return ImageRef{}, fmt.Errorf("bad digest %q: want sha256: and 64 hex characters", digest)
	}
	ref := ImageRef{Repository: name, Digest: digest}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		ref.Repository, ref.Tag = name[:i], name[i+1:]
		if !tagRE.MatchString(ref.Tag) {
			return ImageRef{}, fmt.Errorf("bad tag %q: want up to 128 letters, digits, _, . and -, not starting with . or -", ref.Tag)
		}
	}
	if err := checkRepository(ref.Repository); err != nil {
		return ImageRef{}, err
	}
	return ref, nil
}

// checkRepository checks that s is an image repository without tag or digest.
func checkRepository(s string) error {
	switch {
	case strings.Contains(s, "@"):
		return fmt.Errorf("image repository %q carries a digest; give the repository only", s)
	case strings.LastIndexByte(s, ':') > strings.LastIndexByte(s, '/'):
		return fmt.Errorf("image repository %q carries a tag; give the repository only", s)
	case len(s) > 255 || !repositoryRE.MatchString(s):
		return fmt.Errorf("bad image repository %q: want a registry host and lowercase path, like registry.example.com/team/app", s)
	}
	return nil
}

// String returns repository[:tag]@digest, or repository:tag for a reference
// read back from a values file that records no digest.
func (r ImageRef) String() string {
	if r.Digest == "" {
		return r.Repository + ":" + r.Tag
	}
	if r.Tag == "" {
		return r.Repository + "@" + r.Digest
	}
	return r.Repository + ":" + r.Tag + "@" + r.Digest
}

// Part is the part of an image reference that a values path receives.
type Part string

// The parts of an image reference.
const (
	PartRepository Part = "repository" // harbor.example.com/team/shop
	PartTag        Part = "tag"        // 1.4.2
	PartDigest     Part = "digest"     // sha256:...
	PartReference  Part = "reference"  // harbor.example.com/team/shop@sha256:...
)

// Parts lists the valid parts in documentation order.
var Parts = []Part{PartRepository, PartTag, PartDigest, PartReference}

// Part returns the given part of r. It is an error to ask for the tag of a
// reference that has none: lotse does not invent a tag.
func (r ImageRef) Part(p Part) (string, error) {
	switch p {
	case PartRepository:
		return r.Repository, nil
	case PartTag:
		if r.Tag == "" {
			return "", fmt.Errorf("image reference %s has no tag", r)
		}
		return r.Tag, nil
	case PartDigest:
		return r.Digest, nil
	case PartReference:
		return r.Repository + "@" + r.Digest, nil
	}
	return "", fmt.Errorf("unknown image part %q (want one of %s)", p, joinParts())
}

func joinParts() string {
	s := make([]string, len(Parts))
	for i, p := range Parts {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}
