//go:build !linux

// Package hugepages asks the operating system to back memory with
// transparent huge pages.
package hugepages

import "errors"

// Advise does nothing where there is no madvise(MADV_HUGEPAGE).
func Advise([]byte) error { return errors.ErrUnsupported }
