//go:build !race

package webhook

// memoryScale widens the memory bounds of the abuse tests (see race_test.go).
const memoryScale = 1
