package sbom

import (
	"io"
	"sync"

	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/source"
)

// syft hashes every file an OS package owns (SHA-1 and SHA-256) with
// io.Copy, which allocates a fresh 32 KiB buffer for each file when the
// reader cannot write itself out. On an image whose packages own 15,000
// files that is a third of a gigabyte of garbage, a tenth of a second of
// zeroing and as many more collections. copyingSource hands syft readers
// that write themselves out through a pooled buffer; what they read is
// unchanged.
//
// The same readers refuse what an outline left out (guard, nil for none;
// see ErrOutlined).
type copyingSource struct {
	source.Source
	guard *outlineGuard
}

func (s copyingSource) FileResolver(scope source.Scope) (file.Resolver, error) {
	r, err := s.Source.FileResolver(scope)
	if err != nil {
		return nil, err
	}
	return copyingResolver{Resolver: r, guard: s.guard}, nil
}

type copyingResolver struct {
	file.Resolver
	guard *outlineGuard
}

func (r copyingResolver) FileMetadataByLocation(l file.Location) (file.Metadata, error) {
	if err := r.guard.check(l); err != nil {
		return file.Metadata{}, err
	}
	return r.Resolver.FileMetadataByLocation(l)
}

func (r copyingResolver) FileContentsByLocation(l file.Location) (io.ReadCloser, error) {
	if err := r.guard.check(l); err != nil {
		return nil, err
	}
	rc, err := r.Resolver.FileContentsByLocation(l)
	if err != nil || rc == nil {
		return rc, err
	}
	if _, ok := rc.(io.WriterTo); ok {
		return rc, nil
	}
	// Catalogers parse archives and binaries in place when the reader can
	// seek and read at offsets (stereoscope's readers can): keep that.
	if ra, ok := rc.(interface {
		io.ReaderAt
		io.Seeker
	}); ok {
		return &pooledSectionReader{pooledReader: pooledReader{rc}, at: ra}, nil
	}
	return &pooledReader{rc}, nil
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pooledReader is an io.ReadCloser whose WriteTo copies through a pooled
// buffer.
type pooledReader struct{ io.ReadCloser }

func (r *pooledReader) WriteTo(w io.Writer) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var written int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
			if m != n {
				return written, io.ErrShortWrite
			}
		}
		if err == io.EOF {
			return written, nil
		}
		if err != nil {
			return written, err
		}
	}
}

// pooledSectionReader is a pooledReader that also reads at offsets and
// seeks.
type pooledSectionReader struct {
	pooledReader
	at interface {
		io.ReaderAt
		io.Seeker
	}
}

func (r *pooledSectionReader) ReadAt(p []byte, off int64) (int, error) { return r.at.ReadAt(p, off) }
func (r *pooledSectionReader) Seek(off int64, whence int) (int64, error) {
	return r.at.Seek(off, whence)
}
