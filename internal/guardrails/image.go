package guardrails

import (
	"fmt"
	"strings"
)

// image is a container image reference split the way the container runtime
// reads it.
type image struct {
	repository string // registry host and path, like docker.io/library/nginx
	digest     string // algorithm:hex after @, "" when not pinned
}

// parseImage splits ref. A first path component that holds a dot or a colon,
// or is localhost, is the registry; otherwise the registry is Docker Hub
// (docker.io, with library/ for single-component names), as in Docker and
// containerd.
func parseImage(ref string) image {
	var img image
	name := ref
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name, img.digest = name[:i], name[i+1:]
	}
	// A tag is after the last colon that follows the last slash.
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	host, rest, ok := strings.Cut(name, "/")
	if !ok || !strings.ContainsAny(host, ".:") && host != "localhost" {
		host, rest = "docker.io", name
		if !strings.Contains(rest, "/") {
			rest = "library/" + rest
		}
	}
	img.repository = normalizeHost(host) + "/" + rest
	return img
}

// normalizeHost lowercases a registry host and folds Docker Hub's aliases.
func normalizeHost(h string) string {
	h = strings.ToLower(h)
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}

// pinned reports whether the digest is a well-formed sha256 or sha512 digest.
func (img image) pinned() bool {
	alg, hex, ok := strings.Cut(img.digest, ":")
	if !ok {
		return false
	}
	want := map[string]int{"sha256": 64, "sha512": 128}[alg]
	return want > 0 && len(hex) == want && strings.Trim(hex, "0123456789abcdef") == ""
}

// allowedBy reports whether the image's repository is one of the allowed
// prefixes: a registry host (harbor.example.com) or a host and path
// (harbor.example.com/team), matched on whole path components.
func (img image) allowedBy(allowed []string) bool {
	for _, a := range allowed {
		if img.repository == a || strings.HasPrefix(img.repository, a+"/") {
			return true
		}
	}
	return false
}

// NormalizeRegistry checks an allowed-registry entry (a host, host:port, or
// host with a path prefix, without scheme, tag or digest) and returns it in
// the form images are compared in: the host lowercased, Docker Hub's
// aliases folded into docker.io, no trailing slash.
func NormalizeRegistry(entry string) (string, error) {
	e := strings.TrimSuffix(entry, "/")
	switch {
	case e == "":
		return "", fmt.Errorf("empty registry")
	case strings.Contains(e, "://"):
		return "", fmt.Errorf("registry %q must not have a scheme; give the host, like harbor.example.com", entry)
	case strings.ContainsAny(e, "@*? \t"):
		return "", fmt.Errorf("registry %q must be a host or a host and path, without digest or wildcards", entry)
	}
	host, rest, hasPath := strings.Cut(e, "/")
	if host == "" || strings.Contains(rest, ":") || strings.Contains(rest, "//") {
		return "", fmt.Errorf("registry %q must be a host or a host and path, without tag", entry)
	}
	host = normalizeHost(host)
	if hasPath {
		return host + "/" + rest, nil
	}
	return host, nil
}
