package main

import (
	"fmt"
	"syscall"
)

// addressSpaceLimited says whether the process's address space has a
// limit (RLIMIT_AS, ulimit -v).
func addressSpaceLimited() (bool, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &l); err != nil {
		return false, fmt.Errorf("getrlimit RLIMIT_AS: %w", err)
	}
	return l.Cur != ^uint64(0), nil // RLIM_INFINITY
}
