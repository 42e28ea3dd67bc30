package ci

import (
	"fmt"
	"io"
	"strings"
)

// env reads the process environment through the function main passed in;
// nothing below ci/ reads the environment itself.
type env struct{ getenv func(string) string }

func (e env) get(key string) string { return e.getenv(key) }

func (e env) or(key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

// inCI reports whether lotse runs inside a GitLab CI job.
func (e env) inCI() bool { return e.getenv("GITLAB_CI") == "true" || e.getenv("CI") == "true" }

// section prints GitLab's collapsible log section markers around fn when lotse
// runs in GitLab CI; elsewhere it just runs fn.
// See https://docs.gitlab.com/ci/jobs/job_logs/#custom-collapsible-sections.
func (a *app) section(name, header string, fn func() error) error {
	if !a.env.inCI() {
		return fn()
	}
	id := sectionID(name)
	fmt.Fprintf(a.stderr, "\x1b[0Ksection_start:%d:%s[collapsed=true]\r\x1b[0K%s\n", a.now().Unix(), id, header)
	err := fn()
	fmt.Fprintf(a.stderr, "\x1b[0Ksection_end:%d:%s\r\x1b[0K\n", a.now().Unix(), id)
	return err
}

// sectionID keeps the characters GitLab allows in a section name.
func sectionID(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return "lotse_" + b.String()
}

// printf writes to w and ignores the error, as fmt.Fprintf callers do for
// terminal output.
func printf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format, args...) }
