//go:build !linux

package main

// Where there is no /sys/kernel/mm/transparent_hugepage, growHugeHeap
// stops before it needs this.
func addressSpaceLimited() (bool, error) { return true, nil }
