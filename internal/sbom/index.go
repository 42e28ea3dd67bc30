package sbom

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	stfile "github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/filetree"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/gabriel-vasile/mimetype"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// lotse builds stereoscope's index of an image's layers (each layer's file
// tree, the image's file catalog, the squashed trees) itself, as
// stereoscope's Image.Read does, with two differences: a layer can be
// indexed while it is unpacked (FollowLayer), from the bytes being
// written, instead of once it is on disk (on the bench's go-toolchain
// image, indexing the 15,000 files of its toolchain layer took a core 0.3 s
// after the unpack, before syft could start; it now runs on the core the
// unpack leaves idle); and the squashed trees are copied only where syft
// reads them (see squashLayers).
//
// The index is stereoscope's: the same file trees, built by stereoscope's
// filetree.Builder from stereoscope's file.Metadata (MIME types detected by
// stereoscope from the same bytes), hard links adopted as stereoscope
// adopts them, and the layers squashed by stereoscope's union trees and
// merges.
// TestIndexIsStereoscopes compares the two on every fixture and on archives
// made to be awkward, FuzzIndexIsStereoscopes on archives it makes up. A
// layer lotse does not index as stereoscope would (a sparse file, a
// header-only entry that claims data, a layer of another media type than
// a tar, such as a Singularity image's SquashFS) sends the image to
// stereoscope's own Read (errIndexFallback).

// errIndexFallback says a layer holds what only stereoscope's own Read
// indexes faithfully.
var errIndexFallback = errors.New("layer indexed by stereoscope")

// standardLayer says whether stereoscope indexes a layer of media type mt
// as a tar (its standardLayerMediaTypes).
func standardLayer(mt types.MediaType) bool {
	switch mt {
	case types.OCILayer, types.OCIUncompressedLayer, types.OCIRestrictedLayer,
		types.OCIUncompressedRestrictedLayer, types.OCILayerZStd, types.DockerLayer,
		types.DockerForeignLayer, types.DockerUncompressedLayer,
		"application/vnd.docker.image.rootfs.diff.tar.zstd", "application/vnd.docker.image.rootfs.diff.tar+zstd":
		return true
	}
	return false
}

// indexedLayer is one layer's index, being built or built.
type indexedLayer struct {
	layer *image.Layer
	file  *os.File // the layer's tar, which the catalog's openers read
	done  chan struct{}
	err   error // once done
	// whiteouts says whether a path of the layer's tree may be a
	// whiteout (a name starting with .wh.), once done.
	whiteouts bool
}

// layerIndexes are the layers indexed as they were unpacked (FollowLayer),
// into one file catalog, until an image's SBOM takes them.
type layerIndexes struct {
	mu      sync.Mutex
	catalog *image.FileCatalog
	layers  map[layerKeyAt]*indexedLayer
}

type layerKeyAt struct {
	i      int
	diffID string
}

// FollowLayer indexes layer i of the image being unpacked, whose diff ID
// is diffID, from r as it is written, for the next Generate; f is the
// layer's file, which the index reads file contents from (see oci.Follow,
// whose function it is). It reads r until the index is built or fails (a
// layer stereoscope must read: see errIndexFallback). The next Generate
// uses the index only for an image whose layer i has that diff ID and is
// served from f itself (see servedFrom): a layer that failed its checks,
// or is served as its outline, is indexed again from the file it is
// served from.
func (c *Cataloger) FollowLayer(i int, diffID v1.Hash, r io.Reader, f *os.File) {
	c.followed.mu.Lock()
	if c.followed.catalog == nil {
		c.followed.catalog = image.NewFileCatalog()
		c.followed.layers = map[layerKeyAt]*indexedLayer{}
	}
	catalog := c.followed.catalog
	il := &indexedLayer{
		layer: &image.Layer{Metadata: image.LayerMetadata{Index: uint(i), Digest: diffID.String()}},
		file:  f,
		done:  make(chan struct{}),
	}
	k := layerKeyAt{i, diffID.String()}
	if old := c.followed.layers[k]; old != nil {
		// The same layer unpacked again before a Generate took the
		// first index: the newer one stands.
		go func() { <-old.done; old.file.Close() }()
	}
	c.followed.layers[k] = il
	c.followed.mu.Unlock()
	defer close(il.done)
	cr := &countingReader{r: bufio.NewReaderSize(r, 256<<10)}
	il.whiteouts, il.err = indexLayer(cr, func() int64 { return cr.n }, f, catalog, il.layer)
}

// closeFollowed closes the files of layers indexed but never taken (an
// unpack that failed).
func (c *Cataloger) closeFollowed() {
	_, layers := c.takeFollowed()
	for _, il := range layers {
		<-il.done
		il.file.Close()
	}
}

// takeFollowed hands the layers indexed so far to one Generate.
func (c *Cataloger) takeFollowed() (*image.FileCatalog, map[layerKeyAt]*indexedLayer) {
	c.followed.mu.Lock()
	defer c.followed.mu.Unlock()
	catalog, layers := c.followed.catalog, c.followed.layers
	c.followed.catalog, c.followed.layers = nil, nil
	return catalog, layers
}

// readImage fills si (made by image.New from img; tmpDir holds the layers'
// files, named as stereoscope names them) as stereoscope's Read does,
// taking the layers indexed while they were unpacked and indexing the
// others from their files. The layers indexed while unpacked are taken
// only all together, each for the very file the image serves (servedFrom):
// their catalog then holds no other layer's files. It returns
// errIndexFallback, having filled nothing, where stereoscope must read the
// image itself. release closes the layers' files once the SBOM is done.
// reads says which layers' squashed trees syft reads, and top builds the
// top layer's where it is left to be built later (see squashLayers).
func (c *Cataloger) readImage(ctx context.Context, si *image.Image, img v1.Image, tmpDir string, reads func(i int) bool) (top func() error, release func(), err error) {
	catalog, followed := c.takeFollowed()
	var files []*os.File
	release = func() {
		for _, f := range files {
			f.Close()
		}
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	used := map[*indexedLayer]bool{}
	defer func() {
		for _, il := range followed { // the layers this image does not take
			if !used[il] {
				go func() { <-il.done; il.file.Close() }()
			}
		}
	}()
	md, err := imageMetadata(img)
	if err != nil {
		return nil, release, err
	}
	v1Layers, err := img.Layers()
	if err != nil {
		return nil, release, err
	}
	// As stereoscope, every layer's media type is checked before any is
	// read.
	mts := make([]types.MediaType, len(v1Layers))
	diffIDs := make([]string, len(v1Layers))
	for i, l := range v1Layers {
		if mts[i], err = l.MediaType(); err != nil {
			return nil, release, fmt.Errorf("unable to get media type for layer %d: %w", i, err)
		}
		if !standardLayer(mts[i]) {
			return nil, release, errIndexFallback
		}
		if ids := md.Config.RootFS.DiffIDs; len(ids) == len(v1Layers) {
			diffIDs[i] = ids[i].String()
			continue
		}
		h, err := l.DiffID()
		if err != nil {
			return nil, release, err
		}
		diffIDs[i] = h.String()
	}
	take := followed
	for k, il := range followed {
		if k.i >= len(diffIDs) || diffIDs[k.i] != k.diffID || !servedFrom(il.file, layerPath(tmpDir, k.i, k.diffID)) {
			take = nil
			break
		}
	}
	if take == nil {
		catalog = image.NewFileCatalog()
	}
	layers := make([]*indexedLayer, len(v1Layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i, l := range v1Layers {
		if il := take[layerKeyAt{i, diffIDs[i]}]; il != nil {
			used[il] = true
			files = append(files, il.file)
			layers[i] = il
			continue
		}
		f, err := layerFile(tmpDir, i, diffIDs[i], l)
		if err != nil {
			g.Wait() //nolint:errcheck // the layers being indexed are given up
			return nil, release, fmt.Errorf("failed to fetch layer %d: %w", i, err)
		}
		files = append(files, f)
		il := &indexedLayer{layer: &image.Layer{Metadata: image.LayerMetadata{Index: uint(i), Digest: diffIDs[i]}}, file: f, done: make(chan struct{})}
		layers[i] = il
		g.Go(func() error {
			defer close(il.done)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			ft := &fileTar{f: f, back: make([]byte, 32<<10)}
			il.whiteouts, il.err = indexLayer(ft, func() int64 { return ft.pos }, f, catalog, il.layer)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, release, err
	}
	for i, il := range layers {
		select {
		case <-il.done:
		case <-ctx.Done():
			return nil, release, ctx.Err()
		}
		if il.err != nil {
			if errors.Is(il.err, errIndexFallback) {
				return nil, release, errIndexFallback
			}
			return nil, release, fmt.Errorf("failed to index layer %d: %w", i, il.err)
		}
		il.layer.Metadata.MediaType = mts[i]
		md.Size += il.layer.Metadata.Size
	}
	si.Metadata = md
	si.Layers = make([]*image.Layer, len(layers))
	for i, il := range layers {
		si.Layers[i] = il.layer
	}
	si.FileCatalog = catalog
	whiteouts := func(i int) bool { return layers[i].whiteouts }
	top, err = squashLayers(si, whiteouts, catalog.Index, reads)
	return top, release, err
}

// imageMetadata is stereoscope's readImageMetadata.
func imageMetadata(img v1.Image) (image.Metadata, error) {
	id, err := img.ConfigName()
	if err != nil {
		return image.Metadata{}, err
	}
	config, err := img.ConfigFile()
	if err != nil {
		return image.Metadata{}, err
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return image.Metadata{}, err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return image.Metadata{}, err
	}
	return image.Metadata{
		ID:           id.String(),
		Config:       *config,
		MediaType:    mediaType,
		RawConfig:    rawConfig,
		OS:           config.OS,
		Architecture: config.Architecture,
		Variant:      config.Variant,
	}, nil
}

// layerPath is where stereoscope keeps layer i's uncompressed file in dir.
func layerPath(dir string, i int, diffID string) string {
	return filepath.Join(dir, fmt.Sprintf("%d-%s", i, strings.ReplaceAll(diffID, ":", "-")))
}

// servedFrom says whether f, a layer followed as it was unpacked, is the
// file at path: the one the image being cataloged serves the layer from.
// Unpack puts a layer's file in place (and LinkLayers links it) only once
// the layer passed its checks; a layer given up on, or served as its
// outline, is another file or none.
func servedFrom(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, pi)
}

// layerFile opens layer i's uncompressed file in dir, named as stereoscope
// names it; where there is none, it is written from the layer, as
// stereoscope does.
func layerFile(dir string, i int, diffID string, l v1.Layer) (*os.File, error) {
	name := layerPath(dir, i, diffID)
	if f, err := os.Open(name); err == nil {
		return f, nil
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, "partial-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // fails once renamed
	if _, err := io.Copy(tmp, rc); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return nil, err
	}
	return os.Open(name)
}

// indexLayer builds layer l's file tree from its tar, read from r, into
// catalog, as stereoscope's layerTarIndexer does; pos is how far into the
// tar r has read, and at reads the same tar (the file contents the
// catalog's openers give). It sets l.Tree, l.SearchContext and
// l.Metadata.Size, and says whether a path in the tree may be a whiteout:
// an entry's name has a part that starts with .wh. (the parents the tree
// adds for an entry are parts of its name).
func indexLayer(r io.Reader, pos func() int64, at io.ReaderAt, catalog *image.FileCatalog, l *image.Layer) (whiteouts bool, err error) {
	tree := filetree.New()
	builder := filetree.NewBuilder(tree, catalog.Index)
	tr := tar.NewReader(r)
	openers := map[stfile.ID]stfile.Opener{} // this layer's, for hard links
	mime := newMIMEDetector()
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("failed to read layer=%q tar : %w", l.Metadata.Digest, err)
		}
		if !indexable(hdr) {
			return false, errIndexFallback
		}
		off := pos() // where the entry's data starts
		h := *hdr
		// stereoscope's file.NewMetadata, reading the MIME type's bytes
		// into one buffer rather than a new one per file (see
		// mimeDetector).
		metadata := stfile.Metadata{
			FileInfo:        h.FileInfo(),
			Path:            path.Clean(stfile.DirSeparator + h.Name),
			Type:            stfile.TypeFromTarType(h.Typeflag),
			LinkDestination: h.Linkname,
			UserID:          h.Uid,
			GroupID:         h.Gid,
			MIMEType:        mime.detect(tr),
		}
		whiteouts = whiteouts || strings.Contains(metadata.Path, "/"+stfile.WhiteoutPrefix)

		var hardLinkOpener stfile.Opener
		var preAdoption *stfile.Metadata
		if metadata.Type == stfile.TypeHardLink {
			original := metadata
			var adopted bool
			if hardLinkOpener, adopted = adoptHardLink(tree, catalog, openers, &metadata); adopted {
				preAdoption = &original
			}
		}
		ref, err := builder.Add(metadata)
		if err != nil {
			if preAdoption == nil {
				return false, fmt.Errorf("failed to read layer=%q tar : failed visitor on tar indexEntry: %w", l.Metadata.Digest, err)
			}
			metadata = *preAdoption
			hardLinkOpener = nil
			if ref, err = builder.Add(metadata); err != nil {
				return false, fmt.Errorf("failed to read layer=%q tar : failed visitor on tar indexEntry: %w", l.Metadata.Digest, err)
			}
		}
		l.Metadata.Size += hdr.Size
		opener := hardLinkOpener
		if opener == nil {
			size := hdr.Size
			opener = func() (io.ReadCloser, error) {
				return &contentReader{sr: io.NewSectionReader(at, off, size)}, nil
			}
		}
		openers[ref.ID()] = opener
		catalog.AssociateLayer(*ref, l)
		catalog.AssociateOpener(*ref, opener)
	}
	l.Tree = tree
	l.SearchContext = filetree.NewSearchContext(tree, catalog.Index)
	return whiteouts, nil
}

// mimeReadLimit is how much of a file mimetype reads to detect its type
// (its default read limit, which nothing in lotse changes).
const mimeReadLimit = 4096

// mimeDetector gives stereoscope's file.MIMEType of a file's contents.
// Its buffer (mimeReadLimit bytes) holds what mimetype.DetectReader would
// allocate for each file: on go-toolchain, 100 MB less garbage while the
// layers are unpacked. The type of contents that are all zeros depends on
// their length only, and is detected once per length: an outline's
// left-out contents read as zeros (holes), so on a warm release most
// files of the lower layers are. TestMIMETypeIsStereoscopes compares the
// two.
type mimeDetector struct {
	buf   []byte
	zero  []byte         // mimeReadLimit zeros, compared with what buf holds
	zeros map[int]string // the type of zeros, by length
}

func newMIMEDetector() *mimeDetector {
	return &mimeDetector{buf: make([]byte, mimeReadLimit), zero: make([]byte, mimeReadLimit), zeros: map[int]string{}}
}

func (d *mimeDetector) detect(r io.Reader) string {
	n, err := io.ReadFull(r, d.buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return ""
	}
	if n == 0 {
		return ""
	}
	zero := bytes.Equal(d.buf[:n], d.zero[:n])
	if t, ok := d.zeros[n]; ok && zero {
		return t
	}
	t, _, _ := strings.Cut(mimetype.Detect(d.buf[:n]).String(), ";")
	if zero {
		d.zeros[n] = t
	}
	return t
}

// indexable says whether an entry's contents are, read through archive/tar,
// the bytes stereoscope reads for it (its header's size, from where its
// data starts): not for a sparse file, nor for an entry of a type without
// contents whose header claims some.
func indexable(hdr *tar.Header) bool {
	switch hdr.Typeflag {
	case tar.TypeGNUSparse:
		return false
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		if hdr.Size != 0 {
			return false
		}
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return false
		}
	}
	return true
}

// adoptHardLink is stereoscope's adoptHardLinkInode: a hard link is
// described as the file it names in this layer, and reads that file's
// contents (openers holds this layer's).
func adoptHardLink(ft filetree.Reader, catalog *image.FileCatalog, openers map[stfile.ID]stfile.Opener, metadata *stfile.Metadata) (stfile.Opener, bool) {
	linkPath := stfile.Path(path.Clean(stfile.DirSeparator + metadata.LinkDestination))
	if metadata.LinkDestination == "" || linkPath == stfile.Path(stfile.DirSeparator) {
		return nil, false
	}
	exists, resolution, err := ft.File(linkPath)
	if err != nil || !exists || resolution == nil || resolution.Reference == nil {
		return nil, false
	}
	target, err := catalog.Get(*resolution.Reference)
	if err != nil {
		return nil, false
	}
	if target.Type == stfile.TypeDirectory || target.Type == stfile.TypeHardLink {
		return nil, false
	}
	opener := openers[resolution.ID()]
	if opener == nil {
		return nil, false
	}
	metadata.FileInfo = stfile.ManualInfo{
		NameValue:    path.Base(metadata.Path),
		SizeValue:    target.Size(),
		ModeValue:    metadata.Mode()&^fs.ModeType | target.Mode()&fs.ModeType,
		ModTimeValue: metadata.ModTime(),
		SysValue:     metadata.Sys(),
	}
	metadata.MIMEType = target.MIMEType
	metadata.Type = target.Type
	metadata.LinkDestination = target.LinkDestination
	return opener, true
}

// fileTar reads a layer's tar from its file as stereoscope's index does:
// archive/tar seeks past the contents it skips (an outline's are holes,
// never read), and reads the rest through a small buffer rather than a
// read per header.
type fileTar struct {
	f     io.ReaderAt
	pos   int64
	back  []byte // the buffer
	buf   []byte // what it holds, read at bufAt
	bufAt int64
}

func (r *fileTar) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.pos < r.bufAt || r.pos >= r.bufAt+int64(len(r.buf)) {
		if len(p) >= len(r.back) {
			n, err := r.f.ReadAt(p, r.pos)
			r.pos += int64(n)
			if n > 0 && errors.Is(err, io.EOF) {
				err = nil
			}
			return n, err
		}
		n, err := r.f.ReadAt(r.back, r.pos)
		r.buf, r.bufAt = r.back[:n], r.pos
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.pos-r.bufAt:])
	r.pos += int64(n)
	return n, nil
}

// Seek moves within the tar (archive/tar seeks from where it is).
func (r *fileTar) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += r.pos
	case io.SeekStart:
	default:
		return r.pos, fmt.Errorf("seek from %d: not supported", whence)
	}
	if off < 0 {
		return r.pos, fmt.Errorf("seek to %d: before the start", off)
	}
	r.pos = off
	return r.pos, nil
}

// countingReader counts what was read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// contentReader is a file's contents in its layer's tar, as stereoscope's
// openers give them: it reads, reads at, and seeks (syft reads archives
// and executables in place through those), and closing it closes nothing.
type contentReader struct{ sr *io.SectionReader }

func (c *contentReader) Read(p []byte) (int, error)              { return c.sr.Read(p) }
func (c *contentReader) ReadAt(p []byte, off int64) (int, error) { return c.sr.ReadAt(p, off) }
func (c *contentReader) Seek(off int64, whence int) (int64, error) {
	return c.sr.Seek(off, whence)
}
func (c *contentReader) Close() error { return nil }
