package oci

import (
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A registry image whose layers lotse serves its own way (Spool) forgets
// where its blobs came from, so pushing it would upload every blob, where
// crane copy asks the destination to mount it from the source repository
// (free within one registry, as between two Harbor projects).
// newMountableImage and newMountableIndex give the blobs back their origin:
// remote.Write mounts what it is handed as remote.MountableLayer, and
// uploads only when the registry declines.

type mountableImage struct{ layerMapped }

func newMountableImage(img v1.Image, from name.Reference) mountableImage {
	return mountableImage{layerMapped{Image: img, with: func(l v1.Layer) v1.Layer { return &remote.MountableLayer{Layer: l, Reference: from} }}}
}

// ConfigLayer lets remote.Write mount the config blob too.
func (m mountableImage) ConfigLayer() (v1.Layer, error) {
	l, err := partial.ConfigLayer(m.Image)
	if err != nil {
		return nil, err
	}
	return m.with(l), nil
}

func newMountableIndex(idx v1.ImageIndex, from name.Reference) v1.ImageIndex {
	return imageMapped{imageIndex: idx, with: func(img v1.Image) v1.Image { return newMountableImage(img, from) }}
}

// imageIndex names the embedded index so that imageMapped can have an
// ImageIndex method.
type imageIndex = v1.ImageIndex

// imageMapped is an index whose images (those of its child indexes too)
// are served through with; an image in known is served as it is.
type imageMapped struct {
	imageIndex
	with  func(v1.Image) v1.Image
	known map[v1.Hash]v1.Image
}

func (m imageMapped) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := m.known[h]; ok {
		return img, nil
	}
	img, err := m.imageIndex.Image(h)
	if err != nil {
		return nil, err
	}
	return m.with(img), nil
}

func (m imageMapped) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	idx, err := m.imageIndex.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return imageMapped{imageIndex: idx, with: m.with, known: m.known}, nil
}

// Descriptor keeps the descriptor (platform, annotations) the parent gave.
func (m imageMapped) Descriptor() (*v1.Descriptor, error) {
	return partial.Descriptor(m.imageIndex)
}

// layerMapped is an image whose layers are served through with.
type layerMapped struct {
	v1.Image
	with func(v1.Layer) v1.Layer
}

func (m layerMapped) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = m.with(l)
	}
	return out, nil
}

func (m layerMapped) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return m.with(l), nil
}

func (m layerMapped) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDiffID(h)
	if err != nil {
		return nil, err
	}
	return m.with(l), nil
}

// Descriptor keeps the descriptor (platform, annotations) the index gave.
func (m layerMapped) Descriptor() (*v1.Descriptor, error) {
	return partial.Descriptor(m.Image)
}
