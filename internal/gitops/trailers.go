package gitops

import (
	"regexp"
	"strings"
)

// The trailer keys lotse writes. ParseTrailers matches them case-insensitively.
const (
	TrailerApp           = "Lotse-App"
	TrailerStage         = "Lotse-Stage"
	TrailerImage         = "Lotse-Image"
	TrailerSourceProject = "Lotse-Source-Project"
	TrailerSourceCommit  = "Lotse-Source-Commit"
	TrailerPipeline      = "Lotse-Pipeline"
	TrailerRollback      = "Lotse-Rollback"
)

// Trailers is what a lotse commit in the GitOps repository did, recorded as
// git trailers so that the webhook service can read it back from the commit.
type Trailers struct {
	App           string // lotse.yaml app name
	Stage         string // stage the commit promotes to
	Image         string // the image reference written, ImageRef.String()
	SourceProject string // GitLab project that built the image
	SourceCommit  string // commit SHA the image was built from
	Pipeline      string // URL of the pipeline that built or promoted it
	// Rollback marks a commit that puts back an earlier image: the image it
	// replaces ("nothing" when the stage ran none). Empty on promotions.
	Rollback string
}

// IsRollback reports whether the commit puts back an earlier image.
func (t Trailers) IsRollback() bool { return t.Rollback != "" }

func (t *Trailers) fields() []struct {
	key string
	val *string
} {
	return []struct {
		key string
		val *string
	}{
		{TrailerApp, &t.App},
		{TrailerStage, &t.Stage},
		{TrailerImage, &t.Image},
		{TrailerSourceProject, &t.SourceProject},
		{TrailerSourceCommit, &t.SourceCommit},
		{TrailerPipeline, &t.Pipeline},
		{TrailerRollback, &t.Rollback},
	}
}

// Format returns the trailer lines for the non-empty fields, in a fixed order,
// each ending in a newline. A trailer is one line, so each value is trimmed
// and every run of whitespace in it, line breaks included, becomes one space.
func (t Trailers) Format() string {
	var b strings.Builder
	for _, f := range t.fields() {
		if v := oneLine(*f.val); v != "" {
			b.WriteString(f.key + ": " + v + "\n")
		}
	}
	return b.String()
}

// CommitMessage builds a commit message from a subject line, an optional body
// and the trailers, as separate paragraphs. The subject is made one line as in
// Format. When the body already ends in a
// trailer block (Signed-off-by: ...), the lotse trailers join that block.
func CommitMessage(subject, body string, t Trailers) string {
	msg := oneLine(subject)
	body = strings.Trim(strings.ReplaceAll(body, "\r\n", "\n"), "\n")
	if strings.TrimSpace(body) != "" {
		msg += "\n\n" + body
	}
	tr := t.Format()
	if tr == "" {
		return msg + "\n"
	}
	paras := strings.Split(msg, "\n\n")
	if len(paras) > 1 && isTrailerBlock(strings.Split(paras[len(paras)-1], "\n")) {
		return msg + "\n" + tr
	}
	return msg + "\n\n" + tr
}

// ParseTrailers reads the lotse trailers of a commit message. It follows
// git's rules: the trailers are the last paragraph of the message, which is
// not the subject, and consists of "Key: value" lines (a line starting with
// whitespace continues the previous value); other trailers such as
// Signed-off-by may be mixed in. A block that also holds other lines counts
// when at least a quarter of its lines are trailers and one of them is a
// lotse or git trailer. Keys match case-insensitively; when a key repeats,
// the last value wins. ok reports whether any lotse trailer was found.
func ParseTrailers(message string) (t Trailers, ok bool) {
	lines := strings.Split(strings.ReplaceAll(message, "\r\n", "\n"), "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	start := len(lines)
	for start > 0 && strings.TrimSpace(lines[start-1]) != "" {
		start--
	}
	if start == 0 {
		return Trailers{}, false // a single paragraph is the subject
	}
	block := lines[start:]
	if !isTrailerBlock(block) {
		return Trailers{}, false
	}
	fields := t.fields()
	var last *string
	for _, line := range block {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if last != nil {
				*last = strings.TrimSpace(*last + " " + strings.TrimSpace(line))
			}
			continue
		}
		last = nil
		m := trailerRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, f := range fields {
			if strings.EqualFold(m[1], f.key) {
				*f.val, last, ok = strings.TrimSpace(m[2]), f.val, true
			}
		}
	}
	return t, ok
}

var trailerRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$`)

// isTrailerBlock applies git's test for a trailer block to a paragraph.
func isTrailerBlock(lines []string) bool {
	trailers, other, known := 0, 0, false
	inTrailer := false
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case line != "" && (line[0] == ' ' || line[0] == '\t') && inTrailer:
			continue
		case strings.HasPrefix(line, "(cherry picked from commit "):
			trailers++
			known = true
			inTrailer = false
			continue
		}
		m := trailerRE.FindStringSubmatch(line)
		inTrailer = m != nil
		if m == nil {
			other++
			continue
		}
		trailers++
		key := strings.ToLower(m[1])
		known = known || strings.HasPrefix(key, "lotse-") || key == "signed-off-by"
	}
	return trailers > 0 && (other == 0 || known && 3*trailers >= other)
}

// oneLine joins the lines of s with spaces and trims it.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
