//go:build !linux

package main

// dropStartupPages does nothing where there is no /proc/self/maps.
func dropStartupPages() error { return nil }
