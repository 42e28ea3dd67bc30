//go:build !linux

package main

import "errors"

// Where there is no /sys/kernel/mm/transparent_hugepage, growHugeHeap
// stops before it needs these.

func adviseHugePages([]byte) error { return errors.ErrUnsupported }

func addressSpaceLimited() (bool, error) { return true, nil }
