package sign

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/bits"
)

// scryptKey is scrypt (RFC 7914) as golang.org/x/crypto/scrypt.Key
// computes it, with half of its table, outside the Go heap.
//
// Decrypting a cosign key takes scrypt with N=2^16 and r=8: x/crypto
// allocates a table of 64 MiB on the Go heap, and lotse release decrypts
// its key while the SBOM and the scan start. The collector sets its goal
// from the live heap, table included, so the heap could grow by as much
// again before the next collection: on the bench's small images the table
// made lotse release's peak RSS 60 to 70 MB higher, above the chain's
// largest process.
//
// Here smix keeps one block in two (32 MiB) and recomputes the others when
// it reads them (see smix): a key takes 0.12 s of one core instead of
// 0.10 s (BenchmarkScryptKey). One block in four (16 MiB) took 0.155 s,
// on the critical path of the small images' releases; the whole table
// made their peaks 45 MB higher (node: 145 → 190 MB, against 160 with
// this half). The table is mapped from the operating
// system and unmapped the moment the key is derived, so the
// password-derived state in it goes too, rather than lingering in the heap
// until reused.
//
// salsaXOR, blockMix and smix are x/crypto's (scrypt.go, Copyright 2012
// The Go Authors, BSD-style license: https://go.dev/LICENSE), smix with
// the trade-off; TestScryptKeyIsXCrypto and FuzzScryptKey compare the
// keys with x/crypto's.
func scryptKey(password, salt []byte, N, r, p, keyLen int) ([]byte, error) {
	const maxInt = int(^uint(0) >> 1)
	if N <= 1 || N&(N-1) != 0 {
		return nil, errors.New("scrypt: N must be > 1 and a power of 2")
	}
	if r <= 0 || p <= 0 {
		return nil, errors.New("scrypt: parameters must be > 0")
	}
	if uint64(r)*uint64(p) >= 1<<30 || r > maxInt/128/p || r > maxInt/256 || N > maxInt/128/r {
		return nil, errors.New("scrypt: parameters are too large")
	}
	v, release, err := mapWords(32 * N / tableStride(N) * r)
	if err != nil {
		return nil, err
	}
	defer release()
	xy := make([]uint32, 128*r)
	b, err := pbkdf2.Key(sha256.New, string(password), salt, 1, p*128*r)
	if err != nil {
		return nil, err
	}
	for i := range p {
		smix(b[i*128*r:], r, N, v, xy)
	}
	return pbkdf2.Key(sha256.New, string(password), b, 1, keyLen)
}

// blockCopy copies n numbers from src into dst.
func blockCopy(dst, src []uint32, n int) {
	copy(dst, src[:n])
}

// blockXOR XORs numbers from dst with n numbers from src.
func blockXOR(dst, src []uint32, n int) {
	for i, v := range src[:n] {
		dst[i] ^= v
	}
}

// salsaXOR applies Salsa20/8 to the XOR of 16 numbers from tmp and in,
// and puts the result into both tmp and out.
func salsaXOR(tmp *[16]uint32, in, out []uint32) {
	w0 := tmp[0] ^ in[0]
	w1 := tmp[1] ^ in[1]
	w2 := tmp[2] ^ in[2]
	w3 := tmp[3] ^ in[3]
	w4 := tmp[4] ^ in[4]
	w5 := tmp[5] ^ in[5]
	w6 := tmp[6] ^ in[6]
	w7 := tmp[7] ^ in[7]
	w8 := tmp[8] ^ in[8]
	w9 := tmp[9] ^ in[9]
	w10 := tmp[10] ^ in[10]
	w11 := tmp[11] ^ in[11]
	w12 := tmp[12] ^ in[12]
	w13 := tmp[13] ^ in[13]
	w14 := tmp[14] ^ in[14]
	w15 := tmp[15] ^ in[15]

	x0, x1, x2, x3, x4, x5, x6, x7, x8 := w0, w1, w2, w3, w4, w5, w6, w7, w8
	x9, x10, x11, x12, x13, x14, x15 := w9, w10, w11, w12, w13, w14, w15

	for i := 0; i < 8; i += 2 {
		x4 ^= bits.RotateLeft32(x0+x12, 7)
		x8 ^= bits.RotateLeft32(x4+x0, 9)
		x12 ^= bits.RotateLeft32(x8+x4, 13)
		x0 ^= bits.RotateLeft32(x12+x8, 18)

		x9 ^= bits.RotateLeft32(x5+x1, 7)
		x13 ^= bits.RotateLeft32(x9+x5, 9)
		x1 ^= bits.RotateLeft32(x13+x9, 13)
		x5 ^= bits.RotateLeft32(x1+x13, 18)

		x14 ^= bits.RotateLeft32(x10+x6, 7)
		x2 ^= bits.RotateLeft32(x14+x10, 9)
		x6 ^= bits.RotateLeft32(x2+x14, 13)
		x10 ^= bits.RotateLeft32(x6+x2, 18)

		x3 ^= bits.RotateLeft32(x15+x11, 7)
		x7 ^= bits.RotateLeft32(x3+x15, 9)
		x11 ^= bits.RotateLeft32(x7+x3, 13)
		x15 ^= bits.RotateLeft32(x11+x7, 18)

		x1 ^= bits.RotateLeft32(x0+x3, 7)
		x2 ^= bits.RotateLeft32(x1+x0, 9)
		x3 ^= bits.RotateLeft32(x2+x1, 13)
		x0 ^= bits.RotateLeft32(x3+x2, 18)

		x6 ^= bits.RotateLeft32(x5+x4, 7)
		x7 ^= bits.RotateLeft32(x6+x5, 9)
		x4 ^= bits.RotateLeft32(x7+x6, 13)
		x5 ^= bits.RotateLeft32(x4+x7, 18)

		x11 ^= bits.RotateLeft32(x10+x9, 7)
		x8 ^= bits.RotateLeft32(x11+x10, 9)
		x9 ^= bits.RotateLeft32(x8+x11, 13)
		x10 ^= bits.RotateLeft32(x9+x8, 18)

		x12 ^= bits.RotateLeft32(x15+x14, 7)
		x13 ^= bits.RotateLeft32(x12+x15, 9)
		x14 ^= bits.RotateLeft32(x13+x12, 13)
		x15 ^= bits.RotateLeft32(x14+x13, 18)
	}
	x0 += w0
	x1 += w1
	x2 += w2
	x3 += w3
	x4 += w4
	x5 += w5
	x6 += w6
	x7 += w7
	x8 += w8
	x9 += w9
	x10 += w10
	x11 += w11
	x12 += w12
	x13 += w13
	x14 += w14
	x15 += w15

	out[0], tmp[0] = x0, x0
	out[1], tmp[1] = x1, x1
	out[2], tmp[2] = x2, x2
	out[3], tmp[3] = x3, x3
	out[4], tmp[4] = x4, x4
	out[5], tmp[5] = x5, x5
	out[6], tmp[6] = x6, x6
	out[7], tmp[7] = x7, x7
	out[8], tmp[8] = x8, x8
	out[9], tmp[9] = x9, x9
	out[10], tmp[10] = x10, x10
	out[11], tmp[11] = x11, x11
	out[12], tmp[12] = x12, x12
	out[13], tmp[13] = x13, x13
	out[14], tmp[14] = x14, x14
	out[15], tmp[15] = x15, x15
}

func blockMix(tmp *[16]uint32, in, out []uint32, r int) {
	blockCopy(tmp[:], in[(2*r-1)*16:], 16)
	for i := 0; i < 2*r; i += 2 {
		salsaXOR(tmp, in[i*16:], out[i*8:])
		salsaXOR(tmp, in[i*16+16:], out[i*8+r*16:])
	}
}

func integer(b []uint32, r int) uint64 {
	j := (2*r - 1) * 16
	return uint64(b[j]) | uint64(b[j+1])<<32
}

// smix is scrypt's ROMix on b. It keeps one in tableStride of the N
// blocks it writes (v holds 32*r*N/tableStride(N) words) and recomputes
// a block it reads back from the one kept before it: scrypt's time-memory
// trade-off. A read costs (tableStride-1)/2 more BlockMix steps on
// average, so half the memory takes 25 % more steps in all.
// xy holds four blocks.
func smix(b []byte, r, N int, v, xy []uint32) {
	var tmp [16]uint32
	R := 32 * r
	stride := tableStride(N)
	x, y, t, u := xy[:R], xy[R:2*R], xy[2*R:3*R], xy[3*R:4*R]

	for i := 0; i < R; i++ {
		x[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	for i := 0; i < N; i++ {
		if i%stride == 0 {
			blockCopy(v[i/stride*R:], x, R)
		}
		blockMix(&tmp, x, y, r)
		x, y = y, x
	}
	for i := 0; i < N; i++ {
		j := int(integer(x, r) & uint64(N-1))
		blockCopy(t, v[j/stride*R:], R)
		for range j % stride {
			blockMix(&tmp, t, u, r)
			t, u = u, t
		}
		blockXOR(x, t, R)
		blockMix(&tmp, x, y, r)
		x, y = y, x
	}
	for i := 0; i < R; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], x[i])
	}
}

// tableStride is how many of scrypt's N blocks smix keeps one of.
func tableStride(N int) int { return min(N, 2) }
