package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
)

// The reference payloads (GitLab's documented examples) must decode without
// error, and yield nothing for projects that are not the GitOps project.
func TestDecodeReferencePayloads(t *testing.T) {
	files, err := filepath.Glob("../test/gitlabsim/testdata/payloads/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no reference payloads: %v", err)
	}
	events := map[string]string{"Push": "Push Hook", "Merge": "Merge Request Hook", "Note": "Note Hook", "Pipeline": "Pipeline Hook"}
	for _, f := range files {
		base := filepath.Base(f)
		ev := events[strings.Fields(base)[0]]
		if ev == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		occ, err := decodeGitLab(ev, b, "platform/gitops", "main", testBot)
		if err != nil {
			t.Errorf("%s: %v", base, err)
		}
		if len(occ) != 0 {
			t.Errorf("%s: decoded %v for another project", base, occ)
		}
	}
}

func TestDecodePush(t *testing.T) {
	msg := gitops.CommitMessage("Bump shop in dev", "", gitops.Trailers{App: "shop", Stage: "dev", Image: "r.example/shop@sha256:" + strings.Repeat("a", 64),
		SourceProject: "team/shop", SourceCommit: "0123abcd", Pipeline: "https://gitlab.example/team/shop/-/pipelines/7"})
	body := `{"object_kind":"push","ref":"refs/heads/main","user_id":7,"user_username":"ci-bot","project":{"path_with_namespace":"Platform/GitOps","default_branch":"main"},
	  "commits":[{"id":"c1","message":` + jsonString(msg) + `,"timestamp":"2026-11-01T10:00:00+01:00","modified":["apps/shop/envs/dev/values.yaml"]},
	             {"id":"c2","message":"docs: typo","timestamp":"2026-11-01T10:01:00Z","modified":["README.md"]}]}`
	occ, err := decodeGitLab("Push Hook", []byte(body), "platform/gitops", "main", promotion.User{})
	if err != nil {
		t.Fatal(err)
	}
	if len(occ) != 2 {
		t.Fatalf("got %d occurrences, want a landing and a change: %+v", len(occ), occ)
	}
	o := occ[0]
	if o.Kind != "landed" || o.App != "shop" || o.Stage != "dev" || o.SourceCommit != "0123abcd" || o.Commit != "c1" || o.At.Hour() != 9 ||
		o.User != (promotion.User{ID: 7, Username: "ci-bot"}) || !slices.Equal(o.Files, []string{"apps/shop/envs/dev/values.yaml"}) {
		t.Errorf("occurrence = %+v", o)
	}
	if c := occ[1]; c.Kind != "changed" || c.Commit != "c2" || c.User.ID != 7 || !slices.Equal(c.Files, []string{"README.md"}) {
		t.Errorf("change = %+v", c)
	}
	other := strings.Replace(body, "refs/heads/main", "refs/heads/lotse/shop/dev", 1)
	if occ, _ := decodeGitLab("Push Hook", []byte(other), "platform/gitops", "main", promotion.User{}); len(occ) != 0 {
		t.Errorf("push to a promotion branch decoded as landed: %+v", occ)
	}
}

func TestDecodeMRAndNote(t *testing.T) {
	mr := `{"object_kind":"merge_request","user":{"id":5,"username":"alice"},"project":{"id":3,"path_with_namespace":"platform/gitops"},
	  "object_attributes":{"iid":7,"source_branch":"lotse/shop/production","source_project_id":3,"target_project_id":3,"action":"approved","last_commit":{"id":"abc"}}}`
	occ, err := decodeGitLab("Merge Request Hook", []byte(mr), "platform/gitops", "main", testBot)
	if err != nil || len(occ) != 1 || occ[0].Action != "approved" || occ[0].User != (promotion.User{ID: 5, Username: "alice"}) ||
		occ[0].Stage != "production" || occ[0].IID != 7 || occ[0].SHA != "abc" {
		t.Fatalf("MR = %+v, %v", occ, err)
	}
	// An MR from a fork, whatever its branch is called, and open hooks
	// (lotse learns of its MRs from GitLab's answer) are not lotse's.
	for name, b := range map[string]string{
		"fork": strings.Replace(mr, `"source_project_id":3`, `"source_project_id":99`, 1),
		"open": strings.Replace(mr, `"action":"approved"`, `"action":"open"`, 1),
	} {
		if occ, _ := decodeGitLab("Merge Request Hook", []byte(b), "platform/gitops", "main", testBot); len(occ) != 0 {
			t.Errorf("%s decoded: %+v", name, occ)
		}
	}
	for _, branch := range []string{"feature/x", "lotse/shop", "lotse//prod", "lotse/shop/prod/x"} {
		b := strings.Replace(mr, "lotse/shop/production", branch, 1)
		if occ, _ := decodeGitLab("Merge Request Hook", []byte(b), "platform/gitops", "main", promotion.User{}); len(occ) != 0 {
			t.Errorf("branch %q decoded: %+v", branch, occ)
		}
	}
	note := `{"object_kind":"note","user":{"id":6,"username":"bob"},"project":{"path_with_namespace":"platform/gitops"},
	  "object_attributes":{"note":" /lotse promote production ","noteable_type":"MergeRequest","system":false,"action":"create"},
	  "merge_request":{"iid":7,"source_branch":"lotse/shop/production"}}`
	occ, err = decodeGitLab("Note Hook", []byte(note), "platform/gitops", "main", testBot)
	if err != nil || len(occ) != 1 || occ[0].Body != "/lotse promote production" || occ[0].User.ID != 6 {
		t.Fatalf("note = %+v, %v", occ, err)
	}
	for name, b := range map[string]string{
		"bot's own":   strings.Replace(note, `"id":6,"username":"bob"`, `"id":1,"username":"renamed-bot"`, 1),
		"not command": strings.Replace(note, "/lotse promote", "LGTM", 1),
		"system":      strings.Replace(note, `"system":false`, `"system":true`, 1),
		"edit":        strings.Replace(note, `"action":"create"`, `"action":"update"`, 1),
	} {
		if occ, _ := decodeGitLab("Note Hook", []byte(b), "platform/gitops", "main", testBot); len(occ) != 0 {
			t.Errorf("%s note decoded: %+v", name, occ)
		}
	}
	if _, err := decodeGitLab("Note Hook", []byte(`{"object_attributes":`), "platform/gitops", "main", promotion.User{}); err == nil {
		t.Error("truncated JSON decoded")
	}
}

var testBot = promotion.User{ID: 1, Username: "lotse-bot"}

func TestDecodeArgoCD(t *testing.T) {
	occ, err := decodeArgoCD([]byte(`{"app":"shop","stage":"staging","health":"Healthy","sync":"Synced","images":["r/shop@sha256:1"]}`))
	if err != nil || len(occ) != 1 || !occ[0].Healthy {
		t.Fatalf("healthy = %+v, %v", occ, err)
	}
	occ, _ = decodeArgoCD([]byte(`{"app":"shop","stage":"staging","health":"Degraded","sync":"Synced","message":"CrashLoopBackOff"}`))
	if occ[0].Healthy || !strings.Contains(occ[0].Reason, "CrashLoopBackOff") {
		t.Errorf("degraded = %+v", occ)
	}
	if _, err := decodeArgoCD([]byte(`{"health":"Healthy"}`)); err == nil {
		t.Error("notification without app accepted")
	}
}

// FuzzDecode: no delivery body makes the decoder panic, and whatever it
// returns names a promotion branch's app and stage.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{}`, `{"ref":"refs/heads/main","project":{"path_with_namespace":"p/g"},"commits":[{"message":"x\n\nLotse-App: a\nLotse-Stage: b\nLotse-Image: r@sha256:1","timestamp":"2026-01-01T00:00:00Z"}]}`,
		`{"project":{"path_with_namespace":"p/g"},"object_attributes":{"iid":1,"source_branch":"lotse/a/b","action":"open"}}`, `[1,2]`, `null`} {
		f.Add("Push Hook", []byte(s))
		f.Add("Merge Request Hook", []byte(s))
		f.Add("Note Hook", []byte(s))
	}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		occ, err := decodeGitLab(event, body, "p/g", "main", testBot)
		if err != nil {
			return
		}
		for _, o := range occ {
			if o.Kind == "changed" {
				if o.Commit == "" && len(o.Files) == 0 {
					t.Fatalf("change without a commit or files %+v", o)
				}
				continue
			}
			if o.App == "" || o.Stage == "" || strings.Contains(o.App+o.Stage, "/") && o.Kind != "landed" {
				t.Fatalf("bad occurrence %+v", o)
			}
		}
		_, _ = decodeArgoCD(body)
	})
}

func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// parseGitLab reads the fields encoding/json reads through gitlabHook's
// tags: the same result on GitLab's documented payloads.
func TestParseGitLabMatchesEncodingJSON(t *testing.T) {
	files, err := filepath.Glob("../test/gitlabsim/testdata/payloads/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no reference payloads: %v", err)
	}
	files = append(files, "../test/bench/mr-hook.json")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sameAsEncodingJSON(t, filepath.Base(f), b)
	}
}

func sameAsEncodingJSON(t *testing.T, name string, body []byte) {
	t.Helper()
	var want gitlabHook
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("%s: encoding/json: %v", name, err)
	}
	got, err := parseGitLab(body)
	if err != nil {
		t.Fatalf("%s: parseGitLab: %v", name, err)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("%s:\nparseGitLab   %+v\nencoding/json %+v", name, *got, want)
	}
}

func TestParseGitLabErrors(t *testing.T) {
	for body, want := range map[string]string{
		`{"object_kind":`:                          "unexpected end of JSON input",
		`[]`:                                       "JSON array, not an object",
		`{"object_attributes":{"iid":"7"}}`:        "object_attributes.iid: want a number, got a string",
		`{"object_attributes":{"system":1}}`:       "object_attributes.system: want a boolean, got a number",
		`{"commits":[{"added":["a",2]}]}`:          "commits.0.added.1: want a string, got a number",
		`{"user":"alice"}`:                         "user: want an object, got a string",
		`{"object_attributes":{"iid":1.5}}`:        "object_attributes.iid",
		`{"merge_request":null,"project":null}`:    "",
		`{"object_kind":"push","ref":"\u0072efs"}`: "",
	} {
		_, err := parseGitLab([]byte(body))
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to say %q", body, err, want)
		}
	}
}

// FuzzParseGitLab: whatever encoding/json decodes into gitlabHook and
// encodes back, parseGitLab reads the same from.
func FuzzParseGitLab(f *testing.F) {
	for _, s := range []string{`{}`, `{"object_kind":"merge_request","user":{"id":1,"username":"a\u00e9"},"object_attributes":{"iid":3,"system":true}}`,
		`{"commits":[{"id":"c","added":["lotse.yaml"],"removed":null}],"merge_request":{"iid":2}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var h gitlabHook
		if json.Unmarshal(body, &h) != nil {
			return
		}
		canonical, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		sameAsEncodingJSON(t, string(canonical), canonical)
	})
}
