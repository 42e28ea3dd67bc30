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
// the heap can grow by no more than what is allocated in it.
const scannerGOGC = 300
