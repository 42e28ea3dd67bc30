package gitlabsim_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/lotse/lotse/test/gitlabsim"
)

// scenario registers a hook for every event, then produces one of each event kind.
func scenario(t *testing.T) (*env, *hookSink) {
	t.Helper()
	e := newEnv(t)
	sink := newSink(t)
	if _, err := e.sim.AddHook(e.project, gitlabsim.AllEvents(sink.srv.URL, "tok")); err != nil {
		t.Fatal(err)
	}
	e.branch(t, "f")
	e.commit(t, "developer", "f", map[string]string{"envs/dev/values.yaml": "image: v2\n", "new.txt": "n"})
	_, _, err := e.client(t, "developer").MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{
		SourceBranch: gl.Ptr("f"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("Promote"), Labels: &gl.LabelOptions{"lotse"},
		AssigneeIDs: &[]int64{int64(e.users["maintainer"].ID)}, ReviewerIDs: &[]int64{int64(e.users["maintainer"].ID)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.client(t, "developer").Notes.CreateMergeRequestNote(e.project, 1, &gl.CreateMergeRequestNoteOptions{Body: gl.Ptr("report")}); err != nil {
		t.Fatal(err)
	}
	upstream, err := e.sim.CreatePipeline(e.project, gitlabsim.PipelineSpec{Ref: "main", Status: "success"})
	if err != nil {
		t.Fatal(err)
	}
	sha := branchHead(t, e, "f")
	if _, err := e.sim.CreatePipeline(e.project, gitlabsim.PipelineSpec{
		Ref: "f", SHA: sha, Status: "success", Source: "merge_request_event", Name: "MR pipeline",
		Variables: map[string]string{"LOTSE_ENV": "dev"},
		Builds: []gitlabsim.Build{
			{Name: "build", Stage: "build", Status: "success"},
			{Name: "deploy", Stage: "deploy", Status: "manual", Manual: true, Environment: "production"},
		},
		Upstream: &gitlabsim.Upstream{ProjectID: 1, PipelineID: upstream, JobID: 7},
	}); err != nil {
		t.Fatal(err)
	}
	getMR(t, e, "maintainer", 1)
	if _, _, err := e.client(t, "maintainer").MergeRequests.AcceptMergeRequest(e.project, 1, nil); err != nil {
		t.Fatal(err)
	}
	wait(t, e.sim)
	return e, sink
}

// keyPaths lists every key path of a JSON value; array elements contribute their keys under "[]".
func keyPaths(v any, prefix string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			keyPaths(x, p, out)
		}
	case []any:
		for _, x := range v {
			keyPaths(x, prefix+"[]", out)
		}
	}
}

func TestPayloadsCoverReferenceKeys(t *testing.T) {
	e, sink := scenario(t)
	_ = e
	find := func(event, action string) map[string]any {
		for _, p := range sink.byEvent(event) {
			if action == "" {
				if cs, ok := p["commits"].([]any); ok && len(cs) == 0 {
					continue // a branch creation: no commits to compare
				}
				return p
			}
			if oa, _ := p["object_attributes"].(map[string]any); oa["action"] == action {
				return p
			}
		}
		t.Fatalf("no %s (%s) sent", event, action)
		return nil
	}
	tests := []struct {
		file   string
		event  string
		action string
		// exempt key paths the simulator legitimately cannot have for this event.
		exempt map[string]string
	}{
		{"Push Hook.json", "Push Hook", "", nil},
		{"Merge Request Hook.open.json", "Merge Request Hook", "open", map[string]string{
			"changes.labels.previous[]": "an MR being opened has no previous labels (the array is empty)",
		}},
		{"Merge Request Hook.merge.drone-go-scm.json", "Merge Request Hook", "merge", map[string]string{
			"changes.state": "GitLab 18 reports state_id changes, not state (locked->merged in this 2017 payload)",
		}},
		{"Note Hook.merge_request.json", "Note Hook", "", nil},
		{"Pipeline Hook.json", "Pipeline Hook", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "payloads", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var ref any
			if err := json.Unmarshal(b, &ref); err != nil {
				t.Fatal(err)
			}
			want, got := map[string]bool{}, map[string]bool{}
			keyPaths(ref, "", want)
			var payload any = find(tt.event, tt.action)
			if tt.event == "Pipeline Hook" {
				// the MR pipeline (the one with builds and a merge request)
				for _, p := range sink.byEvent(tt.event) {
					if p["merge_request"] != nil {
						payload = p
					}
				}
			}
			keyPaths(payload, "", got)
			var missing []string
			for k := range want {
				if !got[k] && !exempted(k, tt.exempt) {
					missing = append(missing, k)
				}
			}
			sort.Strings(missing)
			if len(missing) > 0 {
				t.Fatalf("%d key paths of %s missing from the simulator's payload:\n%s", len(missing), tt.file, strings.Join(missing, "\n"))
			}
		})
	}
}

func exempted(k string, ex map[string]string) bool {
	for p := range ex {
		if k == p || strings.HasPrefix(k, p+".") || strings.HasPrefix(k, p+"[]") {
			return true
		}
	}
	return false
}

func TestWebhookDeliveryHeaders(t *testing.T) {
	e, sink := scenario(t)
	reqs := sink.all()
	if len(reqs) == 0 {
		t.Fatal("no deliveries")
	}
	events := map[string]int{}
	seenKeys := map[string]bool{}
	for _, r := range reqs {
		h := r.header
		events[h.Get("X-Gitlab-Event")]++
		if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "GitLab/18.4.0" || h.Get("X-Gitlab-Token") != "tok" ||
			h.Get("X-Gitlab-Instance") != e.srv.URL || h.Get("X-Gitlab-Webhook-UUID") == "" || h.Get("X-Gitlab-Event-UUID") == "" {
			t.Fatalf("headers %v", h)
		}
		k := h.Get("Idempotency-Key")
		if k == "" || seenKeys[k] {
			t.Fatalf("idempotency key %q missing or reused across events", k)
		}
		seenKeys[k] = true
		if h.Get("webhook-signature") != "" {
			t.Fatal("signature without signing token")
		}
	}
	// push f (branch create + commit), push main (merge) + source branch deletion? (remove_source_branch off)
	if events["Push Hook"] != 3 || events["Note Hook"] != 1 || events["Pipeline Hook"] != 2 {
		t.Fatalf("events %v", events)
	}
	var actions []string
	for _, p := range sink.byEvent("Merge Request Hook") {
		actions = append(actions, p["object_attributes"].(map[string]any)["action"].(string))
	}
	if strings.Join(actions, ",") != "open,merge" {
		t.Fatalf("MR actions %v", actions)
	}
	push := sink.byEvent("Push Hook")[1]
	commits := push["commits"].([]any)
	c0 := commits[0].(map[string]any)
	if push["ref"] != "refs/heads/f" || len(commits) != 1 || push["total_commits_count"].(float64) != 1 ||
		fmt.Sprint(c0["added"]) != "[new.txt]" || fmt.Sprint(c0["modified"]) != "[envs/dev/values.yaml]" {
		t.Fatalf("push payload %v", push)
	}
	// every event parses with client-go
	for _, r := range reqs {
		if _, err := gl.ParseWebhook(gl.HookEventType(&http.Request{Header: r.header}), r.body); err != nil {
			t.Fatalf("client-go cannot parse %s: %v", r.header.Get("X-Gitlab-Event"), err)
		}
	}
}

func TestTwoMRHooksPerPushToSourceBranch(t *testing.T) {
	e := newEnv(t)
	sink := newSink(t)
	e.sim.AddHook(e.project, gitlabsim.AllEvents(sink.srv.URL, ""))
	openMR(t, e, "f")
	wait(t, e.sim)
	before := len(sink.byEvent("Merge Request Hook"))
	old := branchHead(t, e, "f")
	e.commit(t, "developer", "f", map[string]string{"b": "b"})
	wait(t, e.sim)
	hooks := sink.byEvent("Merge Request Hook")[before:]
	if len(hooks) != 2 {
		t.Fatalf("%d MR hooks after a push, want 2", len(hooks))
	}
	a0 := hooks[0]["object_attributes"].(map[string]any)
	a1 := hooks[1]["object_attributes"].(map[string]any)
	if a0["action"] != "update" || a0["oldrev"] != old || a1["action"] != "update" || a1["oldrev"] != nil {
		t.Fatalf("hooks %v / %v", a0, a1)
	}
}

func TestWebhookSigningDuplicatesAndResend(t *testing.T) {
	e := newEnv(t)
	sink := newSink(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	spec := gitlabsim.AllEvents(sink.srv.URL, "")
	spec.SigningToken = secret
	if _, err := e.sim.AddHook(e.project, spec); err != nil {
		t.Fatal(err)
	}
	e.sim.SetWebhookFaults(gitlabsim.WebhookFaults{DuplicateEvery: 1, Delay: 50 * time.Millisecond})
	start := time.Now()
	e.commit(t, "maintainer", "main", map[string]string{"a": "a"})
	if n := len(sink.all()); n != 0 {
		t.Fatalf("delivery not asynchronous: %d already", n)
	}
	wait(t, e.sim)
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("delay not applied")
	}
	reqs := sink.all()
	if len(reqs) != 2 {
		t.Fatalf("%d deliveries, want 2 (one duplicate)", len(reqs))
	}
	if reqs[0].header.Get("Idempotency-Key") != reqs[1].header.Get("Idempotency-Key") ||
		reqs[0].header.Get("X-Gitlab-Webhook-UUID") == reqs[1].header.Get("X-Gitlab-Webhook-UUID") {
		t.Fatal("duplicate must keep Idempotency-Key and change X-Gitlab-Webhook-UUID")
	}
	for _, r := range reqs {
		id, ts := r.header.Get("webhook-id"), r.header.Get("webhook-timestamp")
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "."))
		m.Write(r.body)
		want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
		if id != r.header.Get("Idempotency-Key") || r.header.Get("webhook-signature") != want {
			t.Fatalf("signature %q want %q", r.header.Get("webhook-signature"), want)
		}
	}
	e.sim.SetWebhookFaults(gitlabsim.WebhookFaults{})
	if err := e.sim.Resend(0); err != nil {
		t.Fatal(err)
	}
	wait(t, e.sim)
	ev := e.sim.Events()
	if len(ev) != 3 || !ev[2].Resend || ev[2].IdempotencyKey != ev[0].IdempotencyKey || ev[2].StatusCode != 200 {
		t.Fatalf("events %+v", ev)
	}
}

func TestWebhookFailureIsNotRetriedByDefault(t *testing.T) {
	e := newEnv(t)
	sink := newSink(t)
	sink.code = 500
	e.sim.AddHook(e.project, gitlabsim.AllEvents(sink.srv.URL, ""))
	e.commit(t, "maintainer", "main", map[string]string{"a": "a"})
	wait(t, e.sim)
	if ev := e.sim.Events(); len(ev) != 1 || ev[0].StatusCode != 500 {
		t.Fatalf("events %+v", ev)
	}
}
