//go:build race

package webhook

// memoryScale widens the memory bounds of the abuse tests: the race
// detector's shadow memory grows with every byte allocated.
const memoryScale = 4
