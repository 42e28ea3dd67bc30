package oci

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"os"
)

// followStep is how many bytes a fileFollower is told of at a time.
const followStep = 1 << 20

// fileFollower hashes a file as it is written, on a goroutine of its own:
// the goroutine that decompresses a layer (which bounds the unpack of a
// large one) then only writes it, while the follower reads back from the
// page cache what was just written and hashes it. It took the unpack of
// the bench's go-toolchain image (a 245 MB layer) from 1.02 s to 0.95 s
// (medians of six). Unlike handing the bytes to another goroutine, it
// copies nothing on the decompressing goroutine and makes no buffers to
// fault in: the other core is not free (on the development machine, a
// goroutine busy on it slows the decompression by 15 %), so what runs
// there must take more off the decompressing goroutine than it costs it.
//
// Write writes to the file and tells the follower how far it got, a step
// at a time; Sum waits until the follower has hashed all of it.
type fileFollower struct {
	f       *os.File
	n, told int64
	at      chan int64 // how far the file is written; closed at its end
	sum     chan followed
}

type followed struct {
	h   hash.Hash
	err error
}

func followFile(f *os.File) *fileFollower {
	w := &fileFollower{f: f, at: make(chan int64, 1), sum: make(chan followed, 1)}
	go w.follow(w.at)
	return w
}

func (w *fileFollower) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.n += int64(n)
	if w.n-w.told >= followStep {
		select {
		case w.at <- w.n:
			w.told = w.n
		default: // the follower is behind: it hears of the next step
		}
	}
	return n, err
}

// Sum is the SHA-256 of what was written; nothing is written after.
func (w *fileFollower) Sum() (hash.Hash, error) {
	w.at <- w.n
	close(w.at)
	w.at = nil
	r := <-w.sum
	return r.h, r.err
}

// Stop ends the follower of a file given up on; after Sum it does nothing.
func (w *fileFollower) Stop() {
	if w.at == nil {
		return
	}
	close(w.at)
	w.at = nil
	<-w.sum
}

// follow hashes the file up to each offset at gives.
func (w *fileFollower) follow(at <-chan int64) {
	h := sha256.New()
	buf := make([]byte, followStep)
	var off int64
	var err error
	for end := range at {
		for err == nil && off < end {
			want := min(int64(len(buf)), end-off)
			n, rerr := w.f.ReadAt(buf[:want], off)
			if int64(n) < want { // ReadAt says why (io.EOF: the file is shorter)
				err = fmt.Errorf("reading back %s at %d: %d bytes of %d: %w", w.f.Name(), off, n, want, rerr)
				break
			}
			h.Write(buf[:n])
			off += want
		}
	}
	if err != nil {
		w.sum <- followed{err: err}
		return
	}
	w.sum <- followed{h: h}
}
