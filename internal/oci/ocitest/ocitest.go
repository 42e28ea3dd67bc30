// Package ocitest holds in-memory stand-ins for what lotse keeps in its
// layer cache about layers (internal/oci's DiffIDs and Outlines).
package ocitest

import (
	"bytes"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Layers remembers diff IDs (oci.DiffIDs) and keeps outlines
// (oci.Outlines) in memory. Safe for concurrent use.
type Layers struct {
	mu         sync.Mutex
	remembered int
	diffIDs    map[v1.Hash]v1.Hash
	outlines   map[v1.Hash][]byte
	enough     []bool
}

// NewLayers returns an empty Layers.
func NewLayers() *Layers {
	return &Layers{diffIDs: map[v1.Hash]v1.Hash{}, outlines: map[v1.Hash][]byte{}}
}

// Need says which layers (by index) need no more than their outlines.
func (m *Layers) Need(enough ...bool) *Layers {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enough = enough
	return m
}

// Kept counts the outlines kept.
func (m *Layers) Kept() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.outlines)
}

func (m *Layers) DiffID(d v1.Hash) (v1.Hash, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.diffIDs[d]
	return id, ok
}

func (m *Layers) Remember(d, id v1.Hash) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.diffIDs[d] = id
	m.remembered++
}

// Remembered counts the diff IDs remembered (layers checked in full) since
// the last call.
func (m *Layers) Remembered() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.remembered
	m.remembered = 0
	return n
}

func (m *Layers) Enough(i int, _ v1.Hash) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return i < len(m.enough) && m.enough[i]
}

func (m *Layers) Outline(d v1.Hash) (io.ReadCloser, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.outlines[d]
	return io.NopCloser(bytes.NewReader(b)), ok
}

func (m *Layers) Has(d v1.Hash) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.outlines[d]
	return ok
}

func (m *Layers) Keep(d v1.Hash, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outlines[d] = b
}
