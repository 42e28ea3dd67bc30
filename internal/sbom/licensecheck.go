package sbom

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"unsafe"

	"github.com/google/licensecheck"
	"github.com/klauspost/compress/gzip"
)

// licensecheck compiles its built-in licenses into one DFA every time a
// scanner is made: half a second of one core and 300 MB of garbage, on the
// way to the SBOM of every image with a license text. The outcome depends
// only on licensecheck's code and license list, so lotse carries it: a
// snapshot of the compiled scanner (its word dictionary, the phrases a
// match may start with, the DFA), made by the test
// TestLicensecheckSnapshot with -update and embedded here. Loading it takes
// a few milliseconds.
//
// The snapshot records licensecheck's version and the SHA-256 of the
// licenses it was compiled from; a binary built with another licensecheck,
// or with other licenses, compiles them as before (and the test fails
// until the snapshot is made again). The test also checks that the loaded
// scanner equals a compiled one, field by field: the fields are
// licensecheck's unexported ones, set through reflection.

//go:embed licensecheck.snapshot.gz
var licensecheckSnapshot []byte

const snapshotMagic = "lotse licensecheck snapshot 1\n"

// licensesDigest identifies the licenses a scanner is compiled from.
func licensesDigest(ls []licensecheck.License) string {
	h := sha256.New()
	for _, l := range ls {
		fmt.Fprintf(h, "%q %d %q %q\n", l.ID, l.Type, l.LRE, l.URL)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// scannerFields are the fields of a licensecheck.Scanner and of what it
// points to (match.MultiLRE, match.Dict), made settable.
type scannerFields struct {
	licenses, urls             reflect.Value // []License, map[string]License
	dictMap, dictList          reflect.Value // map[string]WordID, []string
	dfa, start                 reflect.Value // reDFA ([]int32), map[phrase]struct{} (phrase: [2]WordID)
	multi                      reflect.Value // *MultiLRE, to set re to
	re                         reflect.Value
	wordType, dfaType, keyType reflect.Type
}

func settable(v reflect.Value, name string, kind reflect.Kind) (reflect.Value, error) {
	f := v.FieldByName(name)
	if !f.IsValid() || f.Kind() != kind {
		return reflect.Value{}, fmt.Errorf("licensecheck has no %s field %s", kind, name)
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem(), nil
}

// fields reaches s's fields; with alloc, it allocates the MultiLRE and
// Dict they point to, else it reads them from s.
func fields(s *licensecheck.Scanner, alloc bool) (*scannerFields, error) {
	var f scannerFields
	var err error
	v := reflect.ValueOf(s).Elem()
	if f.licenses, err = settable(v, "licenses", reflect.Slice); err != nil {
		return nil, err
	}
	if f.urls, err = settable(v, "urls", reflect.Map); err != nil {
		return nil, err
	}
	if f.re, err = settable(v, "re", reflect.Pointer); err != nil {
		return nil, err
	}
	f.multi = f.re
	if alloc {
		f.multi = reflect.New(f.re.Type().Elem())
	}
	if f.multi.IsNil() {
		return nil, errors.New("licensecheck scanner without a MultiLRE")
	}
	dictPtr, err := settable(f.multi.Elem(), "dict", reflect.Pointer)
	if err != nil {
		return nil, err
	}
	if alloc {
		dictPtr.Set(reflect.New(dictPtr.Type().Elem()))
	}
	if f.dictMap, err = settable(dictPtr.Elem(), "dict", reflect.Map); err != nil {
		return nil, err
	}
	if f.dictList, err = settable(dictPtr.Elem(), "list", reflect.Slice); err != nil {
		return nil, err
	}
	if f.dfa, err = settable(f.multi.Elem(), "dfa", reflect.Slice); err != nil {
		return nil, err
	}
	if f.start, err = settable(f.multi.Elem(), "start", reflect.Map); err != nil {
		return nil, err
	}
	f.wordType, f.dfaType, f.keyType = f.dictMap.Type().Elem(), f.dfa.Type(), f.start.Type().Key()
	if f.wordType.Kind() != reflect.Int32 || f.dfaType.Elem().Kind() != reflect.Int32 || f.dictList.Type().Elem().Kind() != reflect.String ||
		f.keyType.Kind() != reflect.Array || f.keyType.Len() != 2 || f.keyType.Elem().Kind() != reflect.Int32 {
		return nil, errors.New("licensecheck's scanner is not laid out as the snapshot expects")
	}
	return &f, nil
}

// writeLicensecheckSnapshot writes the snapshot of s, compiled from
// licenses by licensecheck at version.
func writeLicensecheckSnapshot(w io.Writer, s *licensecheck.Scanner, version string, licenses []licensecheck.License) error {
	f, err := fields(s, false)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(zw)
	fmt.Fprintf(bw, "%s%s\n%s\n", snapshotMagic, version, licensesDigest(licenses))
	u32 := func(n int) { bw.Write(binary.LittleEndian.AppendUint32(nil, uint32(n))) } //nolint:errcheck // bufio keeps the first error for Flush
	u32(f.dictList.Len())
	for i := range f.dictList.Len() {
		w := f.dictList.Index(i).String()
		bw.Write(binary.AppendUvarint(nil, uint64(len(w)))) //nolint:errcheck // see u32
		bw.WriteString(w)                                   //nolint:errcheck // see u32
	}
	u32(f.start.Len())
	var keys [][2]int32
	for _, k := range f.start.MapKeys() {
		keys = append(keys, [2]int32{int32(k.Index(0).Int()), int32(k.Index(1).Int())})
	}
	// Map order is random; the file is not.
	slices.SortFunc(keys, func(a, b [2]int32) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	for _, k := range keys {
		u32(int(uint32(k[0])))
		u32(int(uint32(k[1])))
	}
	u32(f.dfa.Len())
	for i := range f.dfa.Len() {
		u32(int(uint32(int32(f.dfa.Index(i).Int()))))
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// loadLicensecheck makes the scanner the snapshot holds, if it was made by
// licensecheck at version (the one linked) and from its built-in licenses.
func loadLicensecheck(snapshot []byte, version string) (*licensecheck.Scanner, error) {
	zr, err := gzip.NewReader(bytes.NewReader(snapshot))
	if err != nil {
		return nil, fmt.Errorf("licensecheck snapshot: %w", err)
	}
	r := bufio.NewReaderSize(zr, 1<<16)
	header := make([]string, 3)
	for i := range header {
		if header[i], err = r.ReadString('\n'); err != nil {
			return nil, fmt.Errorf("licensecheck snapshot: %w", err)
		}
	}
	licenses := licensecheck.BuiltinLicenses()
	switch {
	case header[0] != snapshotMagic:
		return nil, errors.New("licensecheck snapshot: not one")
	case version == "unknown" || strings.TrimSpace(header[1]) != version:
		return nil, fmt.Errorf("licensecheck snapshot: made by licensecheck %s", strings.TrimSpace(header[1]))
	case strings.TrimSpace(header[2]) != licensesDigest(licenses):
		return nil, errors.New("licensecheck snapshot: made from other licenses")
	}
	s := new(licensecheck.Scanner)
	f, err := fields(s, true)
	if err != nil {
		return nil, err
	}
	var buf [4]byte
	u32 := func() (int, error) {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return 0, err
		}
		return int(binary.LittleEndian.Uint32(buf[:])), nil
	}
	n, err := u32()
	if err != nil || n > 1<<20 {
		return nil, fmt.Errorf("licensecheck snapshot: words: %v", err)
	}
	words := make([]string, n)
	dict := reflect.MakeMapWithSize(f.dictMap.Type(), n)
	for i := range words {
		l, err := binary.ReadUvarint(r)
		if err != nil || l > 1<<16 {
			return nil, fmt.Errorf("licensecheck snapshot: word %d: %v", i, err)
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("licensecheck snapshot: word %d: %w", i, err)
		}
		words[i] = string(b)
		dict.SetMapIndex(reflect.ValueOf(words[i]), reflect.ValueOf(int32(i)).Convert(f.wordType))
	}
	if n, err = u32(); err != nil || n > 1<<20 {
		return nil, fmt.Errorf("licensecheck snapshot: phrases: %v", err)
	}
	start := reflect.MakeMapWithSize(f.start.Type(), n)
	empty := reflect.Zero(f.start.Type().Elem())
	for range n {
		k := reflect.New(f.keyType).Elem()
		for j := range 2 {
			w, err := u32()
			if err != nil {
				return nil, fmt.Errorf("licensecheck snapshot: phrases: %w", err)
			}
			k.Index(j).SetInt(int64(int32(uint32(w))))
		}
		start.SetMapIndex(k, empty)
	}
	if n, err = u32(); err != nil || n > 1<<26 {
		return nil, fmt.Errorf("licensecheck snapshot: DFA: %v", err)
	}
	dfa := make([]int32, n)
	chunk := make([]byte, 64<<10)
	for i := 0; i < n; {
		m := min(len(chunk)/4, n-i)
		if _, err := io.ReadFull(r, chunk[:4*m]); err != nil {
			return nil, fmt.Errorf("licensecheck snapshot: DFA: %w", err)
		}
		for j := range m {
			dfa[i+j] = int32(binary.LittleEndian.Uint32(chunk[4*j:]))
		}
		i += m
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return nil, errors.New("licensecheck snapshot: data after the DFA")
	}

	// What licensecheck's Scanner.init does with the licenses, besides
	// compiling them.
	urls := reflect.MakeMap(f.urls.Type())
	list := reflect.MakeSlice(f.licenses.Type(), 0, len(licenses))
	for _, l := range licenses {
		if l.URL != "" {
			urls.SetMapIndex(reflect.ValueOf(l.URL), reflect.ValueOf(l))
		}
		if l.LRE != "" {
			list = reflect.Append(list, reflect.ValueOf(l))
		}
	}
	f.licenses.Set(list)
	f.urls.Set(urls)
	f.dictMap.Set(dict)
	f.dictList.Set(reflect.ValueOf(words))
	f.dfa.Set(reflect.ValueOf(dfa).Convert(f.dfaType))
	f.start.Set(start)
	f.re.Set(f.multi)
	return s, nil
}
