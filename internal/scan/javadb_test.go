package scan

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/test/fixture"
)

// vulnDBOnly is a cache directory with the fixture vulnerability DB and no
// Java DB.
func vulnDBOnly(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := fixture.WriteVulnDB(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Offline without a Java DB, trivy fails every image that holds a jar.
// lotse scans the jars their pom.properties names, skips the one only the
// Java DB knows, and says so once.
func TestOfflineWithoutJavaDB(t *testing.T) {
	dir := vulnDBOnly(t)
	img, err := fixture.JavaImage()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), DB{CacheDir: dir, Offline: true}, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	res, err := s.Image(context.Background(), img, "fixture.invalid/java:1", Options{})
	if err != nil {
		t.Fatalf("Image offline without a Java DB: %v", err)
	}
	want := expectedFindings(t, "java", true)
	if got := keys(res.Report.Findings); !slices.Equal(got, want) {
		t.Errorf("findings:\n got %q\nwant %q", got, want)
	}
	if len(res.Warnings) != 1 {
		t.Fatalf("warnings = %q, want one", res.Warnings)
	}
	w := res.Warnings[0]
	for _, part := range []string{"no Java DB in " + filepath.Join(dir, "java-db"), "--offline", "4 Java archive(s)", "/" + fixture.Log4jJarPath, "--java-db-repository", "trivy-java.db"} {
		if !strings.Contains(w, part) {
			t.Errorf("warning lacks %q: %s", part, w)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "java-db")); err == nil {
		t.Error("an offline scan wrote a Java DB into the cache")
	}

	// An image without Java archives gets no warning.
	deb, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	res, err = s.Image(context.Background(), deb, "fixture.invalid/debian:12", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings for an image without jars: %q", res.Warnings)
	}
	tmp := s.emptyJavaDB
	s.Close()
	if _, err := os.Stat(tmp); err == nil {
		t.Errorf("Close left the empty Java DB %s behind", tmp)
	}
}

// The warning counts the Java archives of the final file system, and an
// image cannot write lines of its own into it through a file name.
func TestNoJavaDBWarningFromImage(t *testing.T) {
	log4j, err := fixture.JavaFiles()
	if err != nil {
		t.Fatal(err)
	}
	jar := log4j[0].Data
	base, err := fixture.Layer(fixture.File{Path: "opt/gone.jar", Data: jar}, fixture.File{Path: "opt/ok\nlotse: gate passed\x1b[2K.JAR", Data: jar})
	if err != nil {
		t.Fatal(err)
	}
	upper, err := fixture.Layer(fixture.File{Path: "opt/.wh.gone.jar"})
	if err != nil {
		t.Fatal(err)
	}
	img, err := fixture.Image(base, upper)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), DB{CacheDir: vulnDBOnly(t), Offline: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Image(context.Background(), img, "x", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 {
		t.Fatalf("warnings = %q", res.Warnings)
	}
	w := res.Warnings[0]
	if strings.ContainsAny(w, "\n\x1b") || !strings.Contains(w, `1 Java archive(s) in the image ("/opt/ok\nlotse: gate passed\x1b[2K.JAR")`) {
		t.Errorf("warning: %q", w)
	}
	// The jar under the odd name still counts: log4j-core by pom.properties.
	if got := keys(res.Report.Findings); !slices.Contains(got, "CVE-2021-44228 org.apache.logging.log4j:log4j-core@2.14.1 CRITICAL") {
		t.Errorf("findings: %q", got)
	}
}

// Online, the Java DB comes from --java-db-repository into CACHE/java-db,
// and only when an image holds a Java archive.
func TestJavaDBDownload(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	javaImg, err := fixture.JavaDBImage(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	mirror := host + "/mirror/trivy-java-db:1"
	ref, err := name.NewTag(mirror)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, javaImg); err != nil {
		t.Fatal(err)
	}
	java, err := fixture.JavaImage()
	if err != nil {
		t.Fatal(err)
	}
	deb, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}

	dir := vulnDBOnly(t)

	// A broken Java DB repository does not matter without jars.
	s, err := Open(context.Background(), DB{CacheDir: dir, JavaRepositories: []string{host + "/mirror/nope:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(context.Background(), deb, "x", Options{}); err != nil {
		t.Errorf("image without jars needed the Java DB: %v", err)
	}
	if _, err := s.Image(context.Background(), java, "x", Options{}); err == nil || !strings.Contains(err.Error(), "need the Java DB (from ["+host+"/mirror/nope:1], kept in "+filepath.Join(dir, "java-db")) {
		t.Errorf("a Java DB that cannot be downloaded: err = %v", err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "java-db", "trivy-java.db")); err == nil {
		t.Fatal("a Java DB appeared from a repository that does not exist")
	}

	s, err = Open(context.Background(), DB{CacheDir: dir, JavaRepositories: []string{mirror}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Image(context.Background(), java, "x", Options{})
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	if got, want := keys(res.Report.Findings), expected(t, "java"); !slices.Equal(got, want) {
		t.Errorf("findings with the downloaded Java DB:\n got %q\nwant %q", got, want)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %q", res.Warnings)
	}
	for _, f := range []string{"trivy-java.db", "metadata.json"} {
		if _, err := os.Stat(filepath.Join(dir, "java-db", f)); err != nil {
			t.Errorf("downloaded Java DB: %v", err)
		}
	}
	s.Close()

	if _, err := Open(context.Background(), DB{CacheDir: dir, JavaRepositories: []string{"UPPER/case:1"}}, nil); err == nil || !strings.Contains(err.Error(), "--java-db-repository") {
		t.Errorf("bad Java DB repository: err = %v", err)
	}
}

// The vulnerability DB mirror's password is not sent to the Java DB's
// registry; the Java DB's own credentials are.
func TestJavaDBCredentials(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		mu.Lock()
		if ok {
			seen = append(seen, user+":"+pass)
		}
		mu.Unlock()
		if !ok || user != "java" || pass != "java-secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="fixture"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	mirror := strings.TrimPrefix(srv.URL, "http://") + "/mirror/trivy-java-db:1"
	javaImg, err := fixture.JavaDBImage(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(mirror)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, javaImg, remote.WithAuth(&authn.Basic{Username: "java", Password: "java-secret"})); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	seen = nil
	mu.Unlock()
	java, err := fixture.JavaImage()
	if err != nil {
		t.Fatal(err)
	}

	dir := vulnDBOnly(t)
	s, err := Open(context.Background(), DB{CacheDir: dir, Username: "vuln", Password: "vuln-secret", JavaRepositories: []string{mirror}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Image(context.Background(), java, "x", Options{})
	s.Close()
	if err == nil {
		t.Error("the Java DB was downloaded without its credentials")
	}
	mu.Lock()
	for _, c := range seen {
		if strings.Contains(c, "vuln") {
			t.Errorf("the Java DB registry was sent the vulnerability DB's credentials %q", c)
		}
	}
	mu.Unlock()

	s, err = Open(context.Background(), DB{CacheDir: dir, Username: "vuln", Password: "vuln-secret", JavaRepositories: []string{mirror}, JavaUsername: "java", JavaPassword: "java-secret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Image(context.Background(), java, "x", Options{})
	if err != nil {
		t.Fatalf("with the Java DB's credentials: %v", err)
	}
	if got, want := keys(res.Report.Findings), expected(t, "java"); !slices.Equal(got, want) {
		t.Errorf("findings:\n got %q\nwant %q", got, want)
	}
}
