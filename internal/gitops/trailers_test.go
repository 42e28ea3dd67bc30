package gitops

import (
	"strings"
	"testing"
)

var fullTrailers = Trailers{
	App:           "shop",
	Stage:         "dev",
	Image:         "harbor.example.com/team/shop:1.4.2@" + testDigest,
	SourceProject: "team/shop",
	SourceCommit:  "0123abcd0123abcd0123abcd0123abcd0123abcd",
	Pipeline:      "https://gitlab.example.com/team/shop/-/pipelines/42",
	Rollback:      "harbor.example.com/team/shop:1.4.3@" + testDigest,
}

func TestTrailersFormat(t *testing.T) {
	want := "Lotse-App: shop\n" +
		"Lotse-Stage: dev\n" +
		"Lotse-Image: harbor.example.com/team/shop:1.4.2@" + testDigest + "\n" +
		"Lotse-Source-Project: team/shop\n" +
		"Lotse-Source-Commit: 0123abcd0123abcd0123abcd0123abcd0123abcd\n" +
		"Lotse-Pipeline: https://gitlab.example.com/team/shop/-/pipelines/42\n" +
		"Lotse-Rollback: harbor.example.com/team/shop:1.4.3@" + testDigest + "\n"
	if got := fullTrailers.Format(); got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	if got := (Trailers{App: "a\nb", Stage: ""}).Format(); got != "Lotse-App: a b\n" {
		t.Errorf("Format of a multi-line value = %q", got)
	}
}

func TestCommitMessage(t *testing.T) {
	tests := []struct {
		name, subject, body string
		t                   Trailers
		want                string
	}{
		{
			name: "subject only", subject: "shop: promote 1.4.2 to dev", t: Trailers{App: "shop", Stage: "dev"},
			want: "shop: promote 1.4.2 to dev\n\nLotse-App: shop\nLotse-Stage: dev\n",
		},
		{
			name: "body", subject: "shop: promote", body: "\nBuilt by pipeline 42.\n\n", t: Trailers{App: "shop"},
			want: "shop: promote\n\nBuilt by pipeline 42.\n\nLotse-App: shop\n",
		},
		{
			name: "body ending in trailers", subject: "s", body: "text\n\nSigned-off-by: A <a@example.com>", t: Trailers{App: "shop"},
			want: "s\n\ntext\n\nSigned-off-by: A <a@example.com>\nLotse-App: shop\n",
		},
		{
			name: "multi-line subject", subject: "a\nb", t: Trailers{},
			want: "a b\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CommitMessage(tt.subject, tt.body, tt.t)
			if got != tt.want {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
			if tt.t != (Trailers{}) {
				back, ok := ParseTrailers(got)
				if !ok || back != tt.t {
					t.Errorf("ParseTrailers(CommitMessage) = %+v, %v", back, ok)
				}
			}
		})
	}
}

func TestParseTrailers(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want Trailers
		ok   bool
	}{
		{name: "round trip", msg: CommitMessage("promote", "body", fullTrailers), want: fullTrailers, ok: true},
		{
			name: "mixed with other trailers, any case, CRLF",
			msg:  "promote\r\n\r\nbody\r\n\r\nSigned-off-by: A <a@example.com>\r\nlotse-app: shop\r\nLOTSE-STAGE :  dev  \r\nReviewed-by: B\r\n",
			want: Trailers{App: "shop", Stage: "dev"}, ok: true,
		},
		{
			name: "continuation line",
			msg:  "promote\n\nLotse-App: shop\nLotse-Pipeline: https://gitlab.example.com/\n  team/shop/-/pipelines/42\n",
			want: Trailers{App: "shop", Pipeline: "https://gitlab.example.com/ team/shop/-/pipelines/42"}, ok: true,
		},
		{
			name: "only the last paragraph counts",
			msg:  "promote\n\nLotse-App: old\n\nJust text.\n",
			ok:   false,
		},
		{
			name: "subject is never trailers",
			msg:  "Lotse-App: shop\n",
			ok:   false,
		},
		{
			name: "a prose paragraph is not a trailer block",
			msg:  "promote\n\nThis fixes it.\nLotse-App: shop\nMore prose here.\nAnd here.\nAnd more.\n",
			ok:   false,
		},
		{
			name: "a quarter of trailers with a known one counts",
			msg:  "promote\n\nLotse-App: shop\n(cherry picked from commit 0123)\nsome note\n",
			want: Trailers{App: "shop"}, ok: true,
		},
		{
			name: "last value wins",
			msg:  "promote\n\nLotse-App: a\nLotse-App: b\n",
			want: Trailers{App: "b"}, ok: true,
		},
		{
			name: "no lotse trailers",
			msg:  "fix\n\nSigned-off-by: A <a@example.com>\n",
			ok:   false,
		},
		{name: "empty", msg: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseTrailers(tt.msg)
			if ok != tt.ok || got != tt.want {
				t.Errorf("ParseTrailers = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzTrailersRoundTrip(f *testing.F) {
	f.Add("promote", "body", "shop", "dev", "harbor.example.com/team/shop@"+testDigest, "https://x/-/pipelines/1")
	f.Add("a\nb", "x\n\nSigned-off-by: a", "a: b", "", "", "")
	f.Fuzz(func(t *testing.T, subject, body, app, stage, image, pipeline string) {
		tr := Trailers{App: app, Stage: stage, Image: image, Pipeline: pipeline}
		msg := CommitMessage(subject, body, tr)
		got, ok := ParseTrailers(msg)
		want := Trailers{App: oneLine(app), Stage: oneLine(stage), Image: oneLine(image), Pipeline: oneLine(pipeline)}
		if want == (Trailers{}) {
			return
		}
		if !ok || got != want {
			t.Fatalf("ParseTrailers(%q) = %+v, %v; want %+v", msg, got, ok, want)
		}
		if strings.Count(msg, "Lotse-") < 1 {
			t.Fatal("no trailer written")
		}
	})
}
