package main

import (
	"fmt"
	"os"
	"syscall"
)

// dropStartupPages drops the binary's read-only pages from the process's
// mapping (madvise MADV_DONTNEED): the ones the command uses are mapped
// again from the page cache as it touches them. It does nothing under a
// debugger.
func dropStartupPages() error {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	if traced(status) {
		return nil
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	for _, s := range readOnlyMappings(maps, exe) {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, s.start, s.end-s.start, syscall.MADV_DONTNEED); e != 0 {
			return fmt.Errorf("madvise %#x-%#x: %w", s.start, s.end, e)
		}
	}
	return nil
}
