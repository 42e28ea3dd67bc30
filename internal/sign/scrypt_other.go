//go:build !unix

package sign

// mapWords allocates n zeroed 32-bit words on the Go heap, where there is
// no anonymous mapping to take them from.
func mapWords(n int) (words []uint32, release func(), err error) {
	return make([]uint32, n), func() {}, nil
}
