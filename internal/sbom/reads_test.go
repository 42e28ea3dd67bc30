package sbom

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/anchore/syft/syft/file"
)

type contents struct {
	file.Resolver
	open func() io.ReadCloser
}

func (c contents) FileContentsByLocation(file.Location) (io.ReadCloser, error) { return c.open(), nil }

type section struct{ *io.SectionReader }

func (section) Close() error { return nil }

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// Readers handed to syft copy themselves out (io.Copy uses WriteTo) with
// the same bytes, keep seeking and reading at offsets where the original
// could, and report a failed write.
func TestCopyingResolver(t *testing.T) {
	data := strings.Repeat("0123456789abcdef", 10_000) // several buffers' worth
	seekable := contents{open: func() io.ReadCloser {
		return section{io.NewSectionReader(strings.NewReader(data), 0, int64(len(data)))}
	}}
	plain := contents{open: func() io.ReadCloser { return io.NopCloser(strings.NewReader(data)) }}
	for name, r := range map[string]file.Resolver{"seekable": copyingResolver{Resolver: seekable}, "plain": copyingResolver{Resolver: plain}} {
		t.Run(name, func(t *testing.T) {
			rc, err := r.FileContentsByLocation(file.Location{})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := rc.(io.WriterTo); !ok {
				t.Fatal("no WriteTo")
			}
			var b bytes.Buffer
			if n, err := io.Copy(&b, rc); err != nil || n != int64(len(data)) || b.String() != data {
				t.Fatalf("copied %d bytes (%v), same: %v", n, err, b.String() == data)
			}
			_, canSeek := rc.(io.Seeker)
			_, canReadAt := rc.(io.ReaderAt)
			if want := name == "seekable"; canSeek != want || canReadAt != want {
				t.Errorf("Seeker %v, ReaderAt %v, want %v", canSeek, canReadAt, want)
			}
			rc, _ = r.FileContentsByLocation(file.Location{})
			if _, err := io.Copy(&failingWriter{after: 50_000}, rc); err == nil || err.Error() != "disk full" {
				t.Errorf("failed write: %v", err)
			}
		})
	}
}
