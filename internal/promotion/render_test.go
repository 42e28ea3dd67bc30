package promotion

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs from the rendering (run with -update to accept):\n%s", path, got)
	}
}

func TestRenderComment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(r *run) (stage string, at time.Duration)
	}{
		{name: "staging-soaking", build: func(r *run) (string, time.Duration) {
			r.do(landed("dev", img1, "c1"))
			r.at(time.Minute).do(GatesChecked{Stage: "staging", Image: img1,
				Signature: Result{Checked: true, OK: true, Reason: "verified with keys/cosign.pub"}, Scan: clean})
			return "staging", 12 * time.Minute
		}},
		{name: "staging-blocked", build: func(r *run) (string, time.Duration) {
			r.do(landed("dev", img1, "c1"))
			r.do(Health{Stage: "dev", Healthy: true, Reason: "Healthy"})
			r.at(time.Minute).do(GatesChecked{Stage: "staging", Image: img1, Signature: ok,
				Scan: ScanFacts{Checked: true, Findings: 2, Highest: vuln.Critical}})
			return "staging", 5 * time.Minute
		}},
		{name: "production-approvals", build: func(r *run) (string, time.Duration) {
			toStaging(r, img1, 11)
			r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
			r.at(35 * time.Minute).do(landed("staging", img1, "c2"))
			r.do(Health{Stage: "staging", Healthy: true, Reason: "Healthy"})
			r.do(GatesChecked{Stage: "production", Image: img1, Signature: ok, Scan: clean})
			r.at(2 * time.Hour).do(Tick{})
			r.do(MROpened{Stage: "production", IID: 12, Author: bot, Image: img1, SHA: "9a8b7c6d5e4f"})
			r.do(MRApproved{Stage: "production", IID: 12, User: usr("mallory"), SHA: "0f0f0f0f0f0f"})
			for _, u := range []string{"dave", "lotse-bot", "carol"} {
				r.do(MRApproved{Stage: "production", IID: 12, User: usr(u), SHA: "9a8b7c6d5e4f"})
			}
			return "production", 2*time.Hour + 5*time.Minute
		}},
		{name: "staging-merge-checking", build: func(r *run) (string, time.Duration) {
			toStaging(r, img1, 11)
			r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeNotYet})
			return "staging", 31 * time.Minute
		}},
		{name: "production-rollback", build: func(r *run) (string, time.Duration) {
			p := plainPolicy()
			r.p = p
			for i, img := range []string{img1, img2} {
				c := string(rune('a' + i))
				r.at(time.Duration(i) * time.Hour).do(landed("dev", img, "d"+c))
				r.do(MROpened{Author: bot, Stage: "staging", IID: 10 + i, Image: img})
				r.do(MergeResult{Stage: "staging", IID: 10 + i, Attempt: 1, Outcome: MergeDone})
				r.do(landed("staging", img, "s"+c))
				r.do(MROpened{Stage: "production", IID: 20 + i, Image: img, Author: usr("lotse-bot")})
				r.do(MRApproved{Stage: "production", IID: 20 + i, User: usr("carol")})
				r.do(MRApproved{Stage: "production", IID: 20 + i, User: usr("erin")})
				r.do(landed("production", img, "p"+c))
			}
			r.at(3 * time.Hour).do(Command{Stage: "production", IID: 21, NoteID: 1, User: usr("olga"), Text: "/lotse rollback production"})
			r.do(MROpened{Stage: "production", IID: 22, Image: img1, Author: usr("lotse-bot")})
			r.do(MRApproved{Stage: "production", IID: 22, User: usr("olga")})
			return "production", 3*time.Hour + 10*time.Minute
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, testPolicy())
			stage, at := tc.build(r)
			body := RenderComment(r.p, r.s, stage, t0.Add(at))
			if !strings.HasPrefix(body, Marker("shop", stage)+"\n") {
				t.Fatalf("comment does not start with its marker:\n%s", body)
			}
			golden(t, tc.name, body)
		})
	}
}

func TestRenderSourceComment(t *testing.T) {
	r := newRun(t, testPolicy())
	toStaging(r, img1, 11)
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.at(35 * time.Minute).do(landed("staging", img1, "c2"))
	r.do(GatesChecked{Stage: "production", Image: img1, Signature: ok, Scan: clean})
	body := RenderSourceComment(r.p, r.s, "team/shop", "src-1111", t0.Add(50*time.Minute))
	if !strings.HasPrefix(body, Marker("shop", "")+"\n") {
		t.Fatalf("no marker:\n%s", body)
	}
	golden(t, "source-traveling", body)

	// every state change that matters upserts the source MR's comment
	r.at(36 * time.Minute).do(Health{Stage: "staging", Healthy: true})
	var targets []CommentTarget
	for _, c := range only[UpsertComment](r.acts) {
		targets = append(targets, c.Target)
	}
	want := []CommentTarget{{Stage: "staging", IID: 11}, {SourceProject: "team/shop", SourceCommit: "src-1111"}}
	if !reflect.DeepEqual(targets, want) {
		t.Fatalf("comment targets = %+v", targets)
	}
}

func TestCellEscapes(t *testing.T) {
	if got := cell("a | b\n<!-- lotse:sticky app=x -->"); got != `a \| b &lt;\!-- lotse:sticky app=x --&gt;` {
		t.Fatalf("cell = %q", got)
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 45 * time.Second: "45s", 12 * time.Minute: "12m", time.Hour: "1h",
		65 * time.Minute: "1h 5m", 48 * time.Hour: "2d", 51 * time.Hour: "2d 3h",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}
