package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Options configure registry access.
type Options struct {
	// Keychain resolves credentials per registry; nil means anonymous.
	Keychain authn.Keychain
	// Insecure skips TLS verification (plain HTTP is chosen when parsing).
	Insecure bool
	// Platform picks the image out of a multi-platform index for analysis;
	// nil means linux on the running architecture.
	Platform *v1.Platform
	// Transport replaces the HTTP transport (tests, proxies).
	Transport http.RoundTripper
	// UserAgent is sent to registries.
	UserAgent string
}

func (o Options) remote(ctx context.Context) []remote.Option {
	kc := o.Keychain
	if kc == nil {
		kc = authn.NewMultiKeychain()
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithJobs(4)}
	tr := o.Transport
	if tr == nil && o.Insecure {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // --insecure asked for it
		tr = t
	}
	if tr != nil {
		opts = append(opts, remote.WithTransport(tr))
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return opts
}

func (o Options) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// Artifact is what a source holds: one image, or an index of images of which
// Image is the one for the chosen platform. Publishing copies the whole
// artifact; analysis reads Image.
type Artifact struct {
	Image v1.Image
	Index v1.ImageIndex // nil for a single image
	// Digest is the digest of what gets published: the index, or the image.
	Digest v1.Hash
	// mountFrom is the registry repository a local copy was made from:
	// Push asks the destination to mount blobs from there (see mount.go).
	mountFrom name.Reference
}

// Open resolves a source to an artifact. Registry sources are read lazily;
// Spool keeps what is read of them for a push to another registry.
func Open(ctx context.Context, src Source, opts Options) (*Artifact, error) {
	switch src.Kind {
	case Registry:
		desc, err := remote.Get(src.Ref, opts.remote(ctx)...)
		if err != nil {
			return nil, explainRemote(src.Ref.String(), err)
		}
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				return nil, fmt.Errorf("read index %s: %w", src, err)
			}
			return fromIndex(idx, opts.platform())
		}
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("read image %s: %w", src, err)
		}
		return fromImage(img)
	case Layout:
		return openLayout(src, opts.platform())
	case Archive:
		if _, err := os.Stat(src.Path); err != nil {
			return nil, fmt.Errorf("open docker archive: %w", err)
		}
		img, err := tarball.ImageFromPath(src.Path, nil)
		if err != nil {
			return nil, fmt.Errorf("read docker archive %s: %w", src.Path, err)
		}
		return fromImage(img)
	}
	return nil, fmt.Errorf("unknown source kind %d", src.Kind)
}

func openLayout(src Source, plat v1.Platform) (*Artifact, error) {
	if _, err := os.Stat(src.Path); err != nil {
		return nil, fmt.Errorf("open OCI layout: %w", err)
	}
	idx, err := layout.ImageIndexFromPath(src.Path)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", src.Path, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", src.Path, err)
	}
	var picked []v1.Descriptor
	for _, d := range im.Manifests {
		if src.Tag == "" || d.Annotations["org.opencontainers.image.ref.name"] == src.Tag {
			picked = append(picked, d)
		}
	}
	switch {
	case len(picked) == 0 && src.Tag != "":
		return nil, fmt.Errorf("OCI layout %s has no image tagged %q", src.Path, src.Tag)
	case len(picked) == 0:
		return nil, fmt.Errorf("OCI layout %s is empty", src.Path)
	case len(picked) > 1:
		return nil, fmt.Errorf("OCI layout %s holds %d images: pick one with oci:%s:TAG", src.Path, len(picked), src.Path)
	}
	d := picked[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("read OCI layout %s: %w", src.Path, err)
		}
		return fromIndex(child, plat)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", src.Path, err)
	}
	return fromImage(img)
}

func fromImage(img v1.Image) (*Artifact, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	return &Artifact{Image: img, Digest: d}, nil
}

func fromIndex(idx v1.ImageIndex, plat v1.Platform) (*Artifact, error) {
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("index digest: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	for _, m := range im.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() {
			continue
		}
		if m.Platform.Satisfies(plat) {
			img, err := idx.Image(m.Digest)
			if err != nil {
				return nil, fmt.Errorf("read %s image of index: %w", plat, err)
			}
			return &Artifact{Image: img, Index: idx, Digest: d}, nil
		}
	}
	return nil, fmt.Errorf("index %s has no image for platform %s", d, plat)
}

// CheckTags reports the first tag that is not a valid OCI tag.
func CheckTags(tags []string) error {
	for _, t := range tags {
		if _, err := name.NewTag("registry.invalid/x:" + t); err != nil {
			return fmt.Errorf("bad tag %q: %w", t, err)
		}
	}
	return nil
}

// Push writes the artifact to repo by digest, untagged. It returns the
// digest reference, which equals the source digest: the manifest bytes are
// copied unchanged. Blobs of a local copy of a registry image are mounted
// from their source repository where the destination registry can.
func Push(ctx context.Context, art *Artifact, repo name.Repository, opts Options) (name.Digest, error) {
	ro := opts.remote(ctx)
	dst := repo.Digest(art.Digest.String())
	img, idx := art.Image, art.Index
	if art.mountFrom != nil {
		img = newMountableImage(img, art.mountFrom)
		if idx != nil {
			idx = newMountableIndex(idx, art.mountFrom)
		}
	}
	if idx != nil {
		if err := remote.WriteIndex(dst, idx, ro...); err != nil {
			return name.Digest{}, explainRemote(repo.String(), err)
		}
	} else if err := remote.Write(dst, img, ro...); err != nil {
		return name.Digest{}, explainRemote(repo.String(), err)
	}
	return dst, nil
}

// Tag points tags in repo at the artifact, which Push has written there. It
// needs only the manifest, which Push has read: a local copy of the artifact
// may already be gone.
func Tag(ctx context.Context, art *Artifact, repo name.Repository, tags []string, opts Options) error {
	if err := CheckTags(tags); err != nil {
		return err
	}
	var taggable remote.Taggable = art.Image
	if art.Index != nil {
		taggable = art.Index
	}
	for _, t := range tags {
		tag := repo.Tag(t)
		if err := remote.Tag(tag, taggable, opts.remote(ctx)...); err != nil {
			return explainRemote(tag.String(), err)
		}
	}
	return nil
}

// Exists reports whether the registry has a manifest for ref.
func Exists(ctx context.Context, ref name.Reference, opts Options) (bool, error) {
	_, err := remote.Head(ref, opts.remote(ctx)...)
	if err == nil {
		return true, nil
	}
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return false, nil
	}
	return false, explainRemote(ref.String(), err)
}

// explainRemote turns registry errors into one line that names the image and
// the cause a user can act on.
func explainRemote(what string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%s: registry refused access (%d): check the credentials: %w", what, te.StatusCode, err)
		case http.StatusNotFound:
			return fmt.Errorf("%s: not found in the registry: %w", what, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
