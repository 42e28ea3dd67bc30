package ci

// scannerGOGC is the collector's percentage (GOGC) while syft's license
// scanner builds.
//
// Building it makes about 300 MB of short-lived garbage in six million
// allocations while the other lane reads, unpacks and scans the image. At
// the default 100 the collector runs about ten times meanwhile, and with
// both cores busy each run takes CPU from the scanner, which bounds sbom
// and release. At 300 it runs four times. Measured on the bench's 128 MiB
// image: release 6 % faster with the same heap peak; sbom 7 % faster with a
// peak RSS 40 MB higher (290 MB). The window is short: whatever the image,
// the heap can grow by no more than what is allocated in it. In a cold
// release the window keeps coldGOGC (gcpace leaves a phase's percentage
// alone); the scanner is compiled only when lotse's snapshot of it does
// not fit.
const scannerGOGC = 300

// warmGOGC is the collector's percentage (GOGC) for a release whose layer
// cache holds the catalogs of all its layers but the top one (the next
// release of an application on the same base).
//
// Such a release holds a fraction of what a cold one does (its peak RSS
// was 0.59–0.70× the chain's largest process on the bench), while decoding
// the cached catalogs and encoding the SBOM make garbage with both cores
// busy: at the default 100 the collector was a ninth of its CPU. At 200,
// measured in interleaved runs (medians of 9–12, on a machine whose
// timings moved by a tenth): warm debian-files 0.02–0.03 s faster, 0.04–0.09
// s less CPU, for a peak 46 MB higher (228 MB against the chain's
// 256–271); go-toolchain 0.02 s faster (+21 MB, 317 against 421); node
// and java 0.01–0.02 s faster (+6–11 MB). A cold release runs at
// coldGOGC: its peak is the one near the chain's.
const warmGOGC = 200

// lowerLayersCached says whether cached (sbom.CachedLayers) holds every
// layer of an image but the top one: whether the release is warm.
func lowerLayersCached(cached []bool) bool {
	if len(cached) < 2 {
		return false
	}
	for _, c := range cached[:len(cached)-1] {
		if !c {
			return false
		}
	}
	return true
}

// coldGOGC is the collector's percentage (GOGC) for a release that is not
// warm, until its SBOM is cataloged (then coldTailGOGC, with a layer
// cache) and its lanes are done.
//
// Since lotse's heap is on huge pages (cmd/lotse/hugeheap.go) the runtime
// takes its heap from address space mapped at start, so the heap seldom
// grows; the runtime returns free memory to the system mostly as the heap
// grows (it scavenges on growth), so less was returned during a cold
// release (45-62 MB free at the peak, against 25) and debian-files' peak
// rose by about 20 MB, to 0.92-0.95x the chain's largest process. A
// collection also costs less with fewer page faults. At 70, measured in
// interleaved runs (medians of 4-6): cold debian-files peak 236 MB
// against 253 (232 before the huge heap), go-toolchain 330 MB against
// 405, node and java 2-7 MB lower, wall time and CPU no higher on any of
// them (debian-files 1.69 s against 1.84, go-toolchain 3.21 s against
// 3.24). 80 took debian-files to 242 MB and go-toolchain to 362.
const coldGOGC = 70

// coldTailGOGC is the collector's percentage for the rest of a cold release
// (one whose layer cache lacks some lower layer's catalog) once syft's
// catalogs are merged.
//
// Then the image's SBOM is encoded while the catalog of the layer cataloged
// last is written into the layer cache beside it (sbom.Cataloger writes it
// in the background once the catalogs are merged, rather than hold up the
// merge for it: 0.05–0.1 s of a core; closing the cataloger waits for it),
// and the heap holds the SBOM, the catalogs and both encodings at once. At
// the default 100 that overlap raised the peak RSS by 22–28 MB, to the
// chain's largest process on debian-files and go-toolchain; at 50, measured
// in interleaved runs (medians of 10–12): debian-files 0.05 s faster with a
// peak 4 MB lower than when the catalog was written before the merge,
// go-toolchain 0.05 s faster and 2 MB lower.
const coldTailGOGC = 50
