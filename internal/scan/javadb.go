package scan

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	javadbfile "github.com/aquasecurity/trivy-java-db/pkg/db"
	"github.com/aquasecurity/trivy/pkg/javadb"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	// trivy-java-db opens its SQLite file through database/sql's "sqlite"
	// driver, which the trivy CLI registers in its main package.
	_ "modernc.org/sqlite"
)

// JavaDBDir is where a Java DB (trivy-java.db and metadata.json) lives
// under cacheDir, as in trivy's own cache.
func JavaDBDir(cacheDir string) string { return filepath.Join(cacheDir, "java-db") }

func javaDBPresent(dir string) bool {
	for _, f := range []string{"trivy-java.db", "metadata.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// prepareJavaDB points trivy's jar analyzer at the Java DB. trivy opens
// (and, when it is missing or stale, downloads) the Java DB only when an
// image holds a Java archive, so an online scan of an image without jars
// never downloads it.
//
// Offline without a Java DB, trivy fails every image with a jar ("cannot
// skip downloading Java DB on the first run"). lotse hands trivy an empty
// Java DB instead: jars whose pom.properties names them are scanned as
// trivy scans them, and jars trivy would identify through the Java DB (by
// SHA-1, or by checking the Maven coordinates their MANIFEST.MF guesses)
// are not; Image reports that in Result.Warnings.
func (s *Scanner) prepareJavaDB() error {
	dir := JavaDBDir(s.cfg.CacheDir)
	if s.cfg.Offline && !javaDBPresent(dir) {
		tmp, err := os.MkdirTemp("", "lotse-empty-java-db")
		if err != nil {
			return fmt.Errorf("empty Java DB: %w", err)
		}
		if err := writeEmptyJavaDB(JavaDBDir(tmp), time.Now()); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("empty Java DB: %w", err)
		}
		s.noJavaDB, s.emptyJavaDB = true, tmp
		javadb.Init(tmp, nil, true, true, registryOptions(s.cfg.Insecure, "", ""))
		return nil
	}
	repos, err := parseRepositories(s.cfg.JavaRepositories, DefaultJavaDBRepositories, "--java-db-repository", s.cfg.Insecure)
	if err != nil {
		return err
	}
	javadb.Init(s.cfg.CacheDir, repos, s.cfg.Offline, true, registryOptions(s.cfg.Insecure, s.cfg.JavaUsername, s.cfg.JavaPassword))
	return nil
}

func (s *Scanner) javaRepositoryNames() []string {
	if len(s.cfg.JavaRepositories) == 0 {
		return DefaultJavaDBRepositories
	}
	return s.cfg.JavaRepositories
}

func (s *Scanner) removeEmptyJavaDB() {
	if s.emptyJavaDB != "" {
		os.RemoveAll(s.emptyJavaDB)
		s.emptyJavaDB = ""
	}
}

// writeEmptyJavaDB writes a Java DB without entries in trivy-java-db's
// layout (SQLite trivy-java.db and metadata.json) into dir.
func writeEmptyJavaDB(dir string, now time.Time) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	d, err := javadbfile.New(dir)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}()
	if err := d.Init(); err != nil {
		return err
	}
	meta := javadbfile.NewMetadata(dir)
	return meta.Update(javadbfile.Metadata{
		Version:      javadbfile.SchemaVersion,
		NextUpdate:   now.Add(24 * time.Hour),
		UpdatedAt:    now,
		DownloadedAt: now,
	})
}

// javaArchives lists the Java archives trivy's jar analyzer reads in img
// (the final file system, after whiteouts): their number and up to three
// paths.
func javaArchives(img v1.Image) (int, []string, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	n := 0
	var some []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, some, nil
		}
		if err != nil {
			return 0, nil, fmt.Errorf("list Java archives: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		switch strings.ToLower(path.Ext(h.Name)) {
		case ".jar", ".war", ".ear", ".par":
			n++
			if len(some) < 3 {
				some = append(some, printable("/"+strings.TrimPrefix(h.Name, "/")))
			}
		}
	}
}

// printable quotes a path from an image when it holds a character that is
// not printable: the image must not write lines of its own into lotse's
// output (a fake "gate passed", terminal escapes).
func printable(p string) string {
	if strings.ContainsFunc(p, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(p)
	}
	return p
}

// noJavaDBWarning is the warning of a scan that found Java archives
// offline without a Java DB; in is what held them ("the image", "the SBOM").
func (s *Scanner) noJavaDBWarning(in string, n int, some []string) string {
	list := strings.Join(some, ", ")
	if n > len(some) {
		list += ", …"
	}
	return fmt.Sprintf("no Java DB in %s and --offline forbids downloading one: of the %d Java archive(s) in %s (%s), "+
		"only those whose pom.properties names them were scanned; jars trivy identifies by their SHA-1 were skipped. "+
		"Run once without --offline (with --java-db-repository for a mirror of %s), or copy a Java DB (trivy-java.db and metadata.json) to %s",
		JavaDBDir(s.cfg.CacheDir), n, in, list, javadb.DefaultGHCRRepository, JavaDBDir(s.cfg.CacheDir))
}
