package oci

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Spool prepares a registry image (or index) that is to be published to
// another registry: each layer read from the registry (to be unpacked) is
// kept in dir as it is read, once its digest checked, so that the push
// reads it from there instead of the registry again. A layer that is not
// read (an outline, see WithOutlines; another platform's) is read from
// the registry by the push only if the destination lacks it.
func Spool(src Source, art *Artifact, dir string) (*Artifact, error) {
	if src.Kind != Registry {
		return art, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	spool := func(img v1.Image) v1.Image {
		return layerMapped{Image: img, with: func(l v1.Layer) v1.Layer { return spooledLayer{Layer: l, dir: dir} }}
	}
	out := &Artifact{Image: spool(art.Image), Digest: art.Digest, mountFrom: src.Ref}
	if art.Index != nil {
		d, err := art.Image.Digest()
		if err != nil {
			return nil, err
		}
		// The image analysed is pushed as it was read (its config, say,
		// is not read again).
		out.Index = imageMapped{imageIndex: art.Index, with: spool, known: map[v1.Hash]v1.Image{d: out.Image}}
	}
	return out, nil
}

// spooledLayer serves a registry layer's compressed bytes from dir when
// they were read before, and keeps them there when read in full.
type spooledLayer struct {
	v1.Layer
	dir string
}

func (l spooledLayer) path(d v1.Hash) string {
	return filepath.Join(l.dir, strings.ReplaceAll(d.String(), ":", "-"))
}

func (l spooledLayer) Compressed() (io.ReadCloser, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	if f, err := os.Open(l.path(d)); err == nil {
		return f, nil
	}
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(l.dir, "partial-")
	if err != nil {
		return rc, nil // not kept: the push reads the registry again
	}
	return &spoolingReader{rc: rc, tmp: tmp, h: sha256.New(), digest: d, path: l.path(d)}, nil
}

// spoolingReader copies what it reads into tmp and puts tmp in place at
// path when the whole blob was read and matched its digest (the registry
// reader checks it too).
type spoolingReader struct {
	rc     io.ReadCloser
	tmp    *os.File
	h      hash.Hash
	digest v1.Hash
	path   string
	broken bool // a write to tmp failed: tmp is not kept
	done   bool // tmp is closed, and kept or removed
}

func (s *spoolingReader) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if n > 0 && !s.broken && !s.done {
		s.h.Write(p[:n])
		if _, werr := s.tmp.Write(p[:n]); werr != nil {
			s.broken = true
		}
	}
	if errors.Is(err, io.EOF) {
		s.finish(!s.broken && sum(s.h) == s.digest.String())
	}
	return n, err
}

// finish closes tmp, and puts it in place or removes it.
func (s *spoolingReader) finish(keep bool) {
	if s.done {
		return
	}
	s.done = true
	name := s.tmp.Name()
	if s.tmp.Close() != nil || !keep || os.Rename(name, s.path) != nil {
		os.Remove(name)
	}
}

func (s *spoolingReader) Close() error {
	s.finish(false) // not read to its end: not kept
	return s.rc.Close()
}
