package oci

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// Unpacked is an image whose layers have each been read once and kept
// uncompressed on disk. Everything it serves has been checked against the
// image's claims: a layer's compressed bytes against the digest the manifest
// names (what a registry stores and a push sends), its uncompressed bytes
// against the diff ID the config names (what trivy, syft and the layer cache
// name a layer's analysis by).
//
// Whoever builds an image writes both claims, and nothing else checks them:
// a layer that claims another layer's diff ID would borrow that layer's
// cached analysis and never be analysed (trivy analyses two layers that
// claim one diff ID once), and a local layout blob that is not what its name
// says would be analysed while the registry's blob of that name is
// published.
//
// The SBOM and the scan read each layer from the one uncompressed file
// instead of decompressing it again each; Uncompressed opens that file.
// Manifest, config and compressed layers are the source image's.
type Unpacked struct {
	v1.Image
	layers    []v1.Layer
	outlining sync.WaitGroup // WithOutlines: outlines being taken
	byDiffID  map[v1.Hash]*unpackedLayer
	byDigest  map[v1.Hash]*unpackedLayer
}

// Unpack reads every layer of img once, checks both claims and writes the
// uncompressed layer into dir, two layers at a time. A layer's file is named
// as stereoscope (syft) names its own copy of an uncompressed layer,
// "INDEX-sha256-HEX", so that syft cataloging with dir as its content
// directory reads the file instead of writing a copy; when stereoscope's
// naming changes, it copies the file, which is slower, not wrong. A file is
// only put in place once its layer passed both checks.
//
// With DerivedDigests, the layers' digests are not checked (see there).
func Unpack(ctx context.Context, img v1.Image, dir string, opts ...UnpackOption) (*Unpacked, error) {
	var cfg unpackConfig
	for _, o := range opts {
		o(&cfg)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("unpack layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("unpack layers: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return nil, fmt.Errorf("unpack layers: the image config lists %d diff IDs for %d layers", len(cf.RootFS.DiffIDs), len(layers))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("unpack layers: %w", err)
	}
	u := &Unpacked{
		Image:    img,
		layers:   make([]v1.Layer, len(layers)),
		byDiffID: make(map[v1.Hash]*unpackedLayer, len(layers)),
		byDigest: make(map[v1.Hash]*unpackedLayer, len(layers)),
	}
	ul := make([]*unpackedLayer, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i, l := range layers {
		g.Go(func() error {
			diffID := cf.RootFS.DiffIDs[i]
			if ol := cfg.outlined(i, l, diffID, dir); ol != nil {
				ul[i] = ol
				return nil
			}
			var err error
			ul[i], err = unpackLayer(gctx, i, l, diffID, dir, &cfg)
			if err != nil {
				return err
			}
			if cfg.each != nil {
				cfg.each(ul[i].path)
			}
			cfg.keepOutline(&u.outlining, ul[i])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// Two layers may hold the same bytes (an empty layer twice): either
	// file serves both.
	for i, l := range ul {
		u.layers[i] = l
		if _, ok := u.byDiffID[l.diffID]; !ok {
			u.byDiffID[l.diffID] = l
		}
		if _, ok := u.byDigest[l.digest]; !ok {
			u.byDigest[l.digest] = l
		}
	}
	return u, nil
}

// LinkLayers makes the unpacked files appear in dir too, under the same
// names, as hard links: stereoscope removes its content directory when an
// SBOM is done, while the scan may still read the layers. Where a link
// cannot be made, stereoscope copies that layer from Uncompressed, which is
// slower, not wrong.
//
// A layer that is an outline (WithOutlines) is linked as one, and Linked
// says so, even if it is filled meanwhile.
func (u *Unpacked) LinkLayers(dir string) *Linked {
	linked := &Linked{Unpacked: u, outlines: map[string]*outline{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return linked
	}
	for _, l := range u.layers {
		ul := l.(*unpackedLayer)
		ul.mu.Lock()
		if ul.outline != nil {
			linked.outlines[ul.diffID.String()] = ul.outline
		}
		os.Link(ul.path, filepath.Join(dir, filepath.Base(ul.path))) //nolint:errcheck // see above
		ul.mu.Unlock()
	}
	return linked
}

// UnpackOption changes what Unpack checks.
type UnpackOption func(*unpackConfig)

type unpackConfig struct {
	derived  bool
	checked  bool // RegistryBlobs
	each     func(path string)
	follow   func(i int, diffID v1.Hash, r io.Reader, f *os.File)
	known    DiffIDs
	outlines Outlines
}

// DiffIDs remembers which diff ID a layer's compressed bytes decompress to,
// once Unpack checked both (lotse keeps them in the layer cache).
type DiffIDs interface {
	DiffID(digest v1.Hash) (v1.Hash, bool)
	Remember(digest, diffID v1.Hash)
}

// KnownDiffIDs skips hashing the uncompressed bytes of a layer whose digest
// known has seen decompress to the diff ID the config claims: its
// compressed bytes, still checked against the digest, are the bytes that
// were checked then, and decompress to the same bytes. Any other claim is
// checked in full. Layers checked in full are remembered in known. A
// 128 MiB layer costs one SHA-256 pass less (about 0.1 s of a core).
func KnownDiffIDs(known DiffIDs) UnpackOption {
	return func(c *unpackConfig) { c.known = known }
}

// DerivedDigests is for an image whose layer digests nobody claimed: a
// `docker save` tarball lists layer files, and go-containerregistry computes
// their digests from the bytes at hand (compressing a layer stored
// uncompressed to do so). There is nothing to check them against, so
// Unpack reads each layer's uncompressed bytes directly and checks only the
// diff IDs, which the image config does claim. Compressing a layer a second
// time only to decompress it again took longer than analysing it.
func DerivedDigests() UnpackOption { return func(c *unpackConfig) { c.derived = true } }

// RegistryBlobs is for an image read from a registry through
// go-containerregistry's remote package (or spooled from one, see Spool):
// the reader of each compressed layer checks the blob against its digest
// when it reaches the blob's end and fails the read otherwise, so Unpack
// does not hash the compressed bytes a second time. It still reads each
// blob to its end, where that check happens. A 75 MB layer's SHA-256 took
// 0.05 s of the goroutine that decompresses it, which bounds the unpack.
// TestRegistryBlobsChecked serves a blob that is not what its digest says.
func RegistryBlobs() UnpackOption { return func(c *unpackConfig) { c.checked = true } }

// OnLayer calls f with the path of each layer's uncompressed file once the
// layer passed both checks and the file is in place, while the other
// layers are still being read. f is called from two goroutines at once.
func OnLayer(f func(path string)) UnpackOption {
	return func(c *unpackConfig) { c.each = f }
}

// Follow hands each layer Unpack reads in full to f as it is written, on a
// goroutine of its own per layer: r reads the layer's uncompressed bytes
// (its tar) as they are written and ends with io.EOF once all are, or with
// an error if the layer is given up on; f is the layer's file, open for
// reading (the caller's to close), which keeps its bytes where r read them
// once the file is in place. r ends before Unpack checked the layer's diff
// ID: what f makes of a layer must not be used unless Unpack returned the
// image. A layer put in place as its outline (WithOutlines) is not read,
// and not handed to f. Unpack never waits for f, nor for r to be read:
// f may stop reading it at any point.
func Follow(f func(i int, diffID v1.Hash, r io.Reader, file *os.File)) UnpackOption {
	return func(c *unpackConfig) { c.follow = f }
}

// Layers returns the layers in manifest order, each served from its file.
func (u *Unpacked) Layers() ([]v1.Layer, error) { return u.layers, nil }

// LayerByDiffID returns the layer with that diff ID (trivy reads layers
// through it).
func (u *Unpacked) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	if l, ok := u.byDiffID[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("unpacked image has no layer with diff ID %s", h)
}

// LayerByDigest returns the layer with that compressed digest.
func (u *Unpacked) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	if l, ok := u.byDigest[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("unpacked image has no layer with digest %s", h)
}

// unpackedLayer is a checked layer. It is a pointer to a struct without an
// UncompressedLayer field: trivy tells compressed layers apart by
// reflecting on that, and reports their digests.
type unpackedLayer struct {
	v1.Layer
	digest, diffID v1.Hash
	path           string
	size           int64

	// An outlined layer (see Outlines) is filled, read in full, when its
	// contents are first read.
	mu      sync.Mutex
	outline *outline
	fill    func(ctx context.Context) (*unpackedLayer, error)
}

func (l *unpackedLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *unpackedLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *unpackedLayer) Uncompressed() (io.ReadCloser, error) {
	// trivy reads a layer its cache does not hold. The layer's reads use
	// the context the image was opened with.
	if err := l.filled(context.Background()); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	// trivy reads the tar through a reader that cannot seek: buffered, it
	// skips file contents in a few large reads instead of tens of
	// thousands of small ones.
	return layerFile{bufio.NewReaderSize(f, 256<<10), f}, nil
}

func (l *unpackedLayer) UncompressedSize() (int64, error) { return l.size, nil }
func (l *unpackedLayer) String() string                   { return l.diffID.String() }

// layerFile reads an unpacked layer's file through a buffer.
type layerFile struct {
	*bufio.Reader
	f *os.File
}

func (l layerFile) Close() error { return l.f.Close() }
func (l layerFile) Name() string { return l.f.Name() }

func unpackLayer(ctx context.Context, i int, l v1.Layer, diffID v1.Hash, dir string, cfg *unpackConfig) (*unpackedLayer, error) {
	derived, known := cfg.derived, cfg.known
	n := i + 1 // people count layers from 1
	digest, err := l.Digest()
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", n, err)
	}
	ch := sha256.New()
	var br *bufio.Reader // the compressed stream, when its digest is checked
	var content io.ReadCloser
	if derived {
		if content, err = l.Uncompressed(); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", n, digest, err)
		}
		content = struct {
			io.Reader
			io.Closer
		}{ctxReader{ctx, content}, content}
	} else {
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", n, digest, err)
		}
		defer rc.Close()
		var compressed io.Reader = ctxReader{ctx, rc}
		if !cfg.checked {
			compressed = io.TeeReader(compressed, ch)
		}
		br = bufio.NewReaderSize(compressed, 1<<16)
		if content, err = decompress(br); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", n, digest, err)
		}
	}
	defer content.Close()

	f, err := os.CreateTemp(dir, "partial-")
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", n, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name()) // fails once renamed into place
	}()
	// The diff ID needs no second look when the compressed bytes, checked
	// below, were seen to decompress to it before (KnownDiffIDs).
	var seen bool
	if !derived && known != nil {
		id, ok := known.DiffID(digest)
		seen = ok && id == diffID
	}
	var follower *fileFollower
	dst := io.Writer(f)
	if !seen || cfg.follow != nil {
		follower = &fileFollower{f: f}
		defer follower.Stop()
		dst = follower
		if !seen {
			follower.hash()
		}
		if cfg.follow != nil {
			// The reader's own descriptor reads the file once it is renamed.
			if rf, err := os.Open(f.Name()); err == nil {
				s := follower.stream(rf)
				go cfg.follow(i, diffID, s, rf)
			}
		}
	}
	size, err := io.Copy(dst, content)
	if err != nil {
		return nil, fmt.Errorf("layer %d (%s): %w", n, digest, err)
	}
	var uh hash.Hash
	if follower != nil {
		if uh, err = follower.Sum(); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", n, digest, err)
		}
	}
	if br != nil {
		// The rest of the compressed stream (gzip's trailer, padding)
		// belongs to the digest too.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", n, digest, err)
		}
		if !cfg.checked { // else the registry reader checked it
			if got := sum(ch); got != digest.String() {
				return nil, fmt.Errorf("layer %d: the manifest names it %s, but its content is %s", n, digest, got)
			}
		}
	}
	if uh != nil {
		if got := sum(uh); got != diffID.String() {
			return nil, fmt.Errorf("layer %d (%s): the image config says its diff ID is %s, but its content is %s", n, digest, diffID, got)
		}
		if !derived && known != nil {
			known.Remember(digest, diffID)
		}
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("layer %d: %w", n, err)
	}
	path := layerPath(dir, i, diffID)
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, fmt.Errorf("layer %d: %w", n, err)
	}
	return &unpackedLayer{Layer: l, digest: digest, diffID: diffID, path: path, size: size}, nil
}

// layerPath is where layer i's uncompressed file is put: named as
// stereoscope names its own copy (see Unpack).
func layerPath(dir string, i int, diffID v1.Hash) string {
	return filepath.Join(dir, fmt.Sprintf("%d-%s", i, strings.ReplaceAll(diffID.String(), ":", "-")))
}

var (
	gzipMagic = []byte{0x1f, 0x8b, 0x08}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress reads a layer as go-containerregistry does: gzip or zstd by
// their magic bytes, anything else as an uncompressed tar.
func decompress(br *bufio.Reader) (io.ReadCloser, error) {
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

func sum(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
