package gitlab_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/test/gitlabsim"
)

func commitReq(path, msg string) gitlab.CommitRequest {
	return gitlab.CommitRequest{Branch: "main", Message: msg, Actions: []gitlab.FileAction{{Action: gitlab.ActionCreate, Path: path, Content: []byte("x")}}}
}

// commitsWithMessage counts commits on main with exactly msg.
func commitsWithMessage(t *testing.T, c *gitlab.Client, msg string) int {
	t.Helper()
	hist, err := c.FileHistory(ctx(t), project, ".", "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, cm := range hist {
		if cm.Message == msg {
			n++
		}
	}
	return n
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		fault     gitlabsim.Fault
		op        func(t *testing.T, c *gitlab.Client) error
		class     string
		method    string
		wantSent  int
		wantErr   error
		retryable bool
	}{
		{
			name:  "GET retried through 503s",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassFiles, Status: 503, Times: 2},
			op: func(t *testing.T, c *gitlab.Client) error {
				_, err := c.File(ctx(t), project, "envs/dev/values.yaml", "main")
				return err
			},
			class: gitlabsim.ClassFiles, method: "GET", wantSent: 3,
		},
		{
			name:  "GET gives up after the attempt budget",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassFiles, Status: 502},
			op: func(t *testing.T, c *gitlab.Client) error {
				_, err := c.File(ctx(t), project, "envs/dev/values.yaml", "main")
				return err
			},
			class: gitlabsim.ClassFiles, method: "GET", wantSent: 4, wantErr: gitlab.ErrUnavailable, retryable: true,
		},
		{
			name:  "POST commit retried after 429 (nothing happened)",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassCommits, Method: "POST", Status: 429, Times: 2},
			op: func(t *testing.T, c *gitlab.Client) error {
				_, err := c.Commit(ctx(t), project, commitReq("a", "after 429"))
				return err
			},
			class: gitlabsim.ClassCommits, method: "POST", wantSent: 3,
		},
		{
			name:  "POST commit not resent after a 502 that followed the write",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassCommits, Method: "POST", Status: 502, After: true, Times: 1},
			op: func(t *testing.T, c *gitlab.Client) error {
				cm, err := c.Commit(ctx(t), project, commitReq("b", "after write"))
				if err == nil && cm.Message != "after write" {
					t.Fatalf("reconciled commit %+v", cm)
				}
				if n := commitsWithMessage(t, c, "after write"); n != 1 {
					t.Fatalf("%d commits, want exactly 1", n)
				}
				return err
			},
			class: gitlabsim.ClassCommits, method: "POST", wantSent: 1,
		},
		{
			name:  "POST commit re-sent after a 500 that happened before the write",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassCommits, Method: "POST", Status: 500, Times: 1},
			op: func(t *testing.T, c *gitlab.Client) error {
				_, err := c.Commit(ctx(t), project, commitReq("c", "before write"))
				if n := commitsWithMessage(t, c, "before write"); n != 1 {
					t.Fatalf("%d commits, want exactly 1", n)
				}
				return err
			},
			class: gitlabsim.ClassCommits, method: "POST", wantSent: 2,
		},
		{
			name:  "POST MR not resent after a 504 that followed the write",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassMergeRequests, Method: "POST", Status: 504, After: true, Times: 1},
			op: func(t *testing.T, c *gitlab.Client) error {
				mr, err := c.CreateMR(ctx(t), project, gitlab.CreateMRRequest{SourceBranch: "feature", TargetBranch: "main", Title: "t"})
				if err == nil && mr.IID != 1 {
					t.Fatalf("reconciled MR %+v", mr)
				}
				return err
			},
			class: gitlabsim.ClassMergeRequests, method: "POST", wantSent: 1,
		},
		{
			name:  "POST note not resent after a 502 that followed the write",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassNotes, Method: "POST", Status: 502, After: true, Times: 1},
			op: func(t *testing.T, c *gitlab.Client) error {
				if _, err := c.CreateMR(ctx(t), project, gitlab.CreateMRRequest{SourceBranch: "feature", TargetBranch: "main", Title: "t"}); err != nil {
					t.Fatal(err)
				}
				n, err := c.CreateNote(ctx(t), project, 1, "report")
				notes, _ := c.Notes(ctx(t), project, 1)
				if err == nil && (len(notes) != 1 || notes[0].ID != n.ID) {
					t.Fatalf("notes %+v", notes)
				}
				return err
			},
			class: gitlabsim.ClassNotes, method: "POST", wantSent: 1,
		},
		{
			name:  "merge not resent after a 502 that followed the merge",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassMerge, Status: 502, After: true, Times: 1},
			op: func(t *testing.T, c *gitlab.Client) error {
				if _, err := c.CreateMR(ctx(t), project, gitlab.CreateMRRequest{SourceBranch: "feature", TargetBranch: "main", Title: "t"}); err != nil {
					t.Fatal(err)
				}
				c.GetMR(ctx(t), project, 1) // finish the mergeability check
				mr, err := c.MergeMR(ctx(t), project, 1, gitlab.MergeOptions{})
				if err == nil && mr.State != "merged" {
					t.Fatalf("reconciled merge %+v", mr)
				}
				return err
			},
			class: gitlabsim.ClassMerge, method: "PUT", wantSent: 1,
		},
		{
			name:  "PUT update MR is idempotent: retried through 5xx",
			fault: gitlabsim.Fault{Class: gitlabsim.ClassMergeRequests, Method: "PUT", Status: 500, Times: 1},
			op: func(t *testing.T, c *gitlab.Client) error {
				if _, err := c.CreateMR(ctx(t), project, gitlab.CreateMRRequest{SourceBranch: "feature", TargetBranch: "main", Title: "t"}); err != nil {
					t.Fatal(err)
				}
				d := "x"
				_, err := c.UpdateMR(ctx(t), project, 1, gitlab.UpdateMRRequest{Description: &d})
				return err
			},
			class: gitlabsim.ClassMergeRequests, method: "PUT", wantSent: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			c := f.client(t, "bot")
			if _, err := c.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "feature", StartBranch: "main", Message: "f",
				Actions: []gitlab.FileAction{{Action: gitlab.ActionCreate, Path: "f", Content: []byte("f")}}}); err != nil {
				t.Fatal(err)
			}
			f.sim.ClearRequests()
			f.sim.Faults(tt.fault)
			err := tt.op(t, c)
			f.sim.Faults()
			if tt.wantErr == nil && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != nil && (!errors.Is(err, tt.wantErr) || gitlab.Retryable(err) != tt.retryable) {
				t.Fatalf("error %v, want %v (retryable %v)", err, tt.wantErr, tt.retryable)
			}
			if got := f.sim.CountRequests(tt.class, tt.method); got != tt.wantSent {
				t.Fatalf("simulator received %d %s %s requests, want %d: %+v", got, tt.method, tt.class, tt.wantSent, f.sim.Requests())
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	f := setup(t)
	c := f.client(t, "bot")
	f.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassFiles, Status: 429, RetryAfter: 1, Times: 1})
	start := time.Now()
	if _, err := c.File(ctx(t), project, "envs/dev/values.yaml", "main"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("retried after %v, before Retry-After", d)
	}
}

func TestRateLimitRespectsContext(t *testing.T) {
	f := setup(t)
	c := f.client(t, "bot")
	f.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassFiles, Status: 429, RetryAfter: 30})
	cx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.File(cx, project, "envs/dev/values.yaml", "main")
	if !errors.Is(err, gitlab.ErrRateLimited) || !gitlab.Retryable(err) || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	var ae *gitlab.APIError
	if !errors.As(err, &ae) || ae.RetryAfter != 30*time.Second {
		t.Fatalf("retry after %+v", ae)
	}
	// a Retry-After beyond the client's limit is not waited for
	c2 := f.client(t, "bot", gitlab.WithMaxRetryAfter(time.Second))
	if _, err := c2.File(ctx(t), project, "envs/dev/values.yaml", "main"); !errors.Is(err, gitlab.ErrRateLimited) {
		t.Fatalf("err %v", err)
	}
	if n := f.sim.CountRequests(gitlabsim.ClassFiles, "GET"); n != 2 {
		t.Fatalf("%d requests, want 2 (one per client)", n)
	}
}

func TestJobTokenClient(t *testing.T) {
	f := setup(t)
	jt, err := f.sim.JobToken(project, "bot")
	if err != nil {
		t.Fatal(err)
	}
	c, err := gitlab.NewJobToken(f.url, jt)
	if err != nil {
		t.Fatal(err)
	}
	// the JSON files API refuses job tokens
	_, err = c.File(ctx(t), project, "envs/dev/values.yaml", "main")
	if !errors.Is(err, gitlab.ErrUnauthorized) || strings.Contains(err.Error(), jt) {
		t.Fatalf("err %v", err)
	}
	if _, err := c.FindOpenMR(ctx(t), project, "x"); !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("MR read with job token: %v", err)
	}
}

func TestParseExistingIID(t *testing.T) {
	// exercised through CreateMR in TestMergeRequests; here the parser alone
	for _, tt := range []struct {
		msg  string
		want int64
	}{
		{"Another open merge request already exists for this source branch: !42", 42},
		{"Another open merge request already exists for this source branch: !", 0},
		{"nothing", 0},
	} {
		if got := gitlab.ParseExistingIID(tt.msg); got != tt.want {
			t.Errorf("%q: %d want %d", tt.msg, got, tt.want)
		}
	}
}

func FuzzErrorMessage(f *testing.F) {
	f.Add([]byte(`{"message":["Another open merge request already exists for this source branch: !7"]}`))
	f.Add([]byte(`{"message":{"target_url":["is blocked"]}}`))
	f.Add([]byte(`Retry later`))
	f.Fuzz(func(t *testing.T, body []byte) {
		msg := gitlab.ErrorMessage(body)
		if iid := gitlab.ParseExistingIID(msg); iid < 0 {
			t.Fatalf("negative iid %d", iid)
		}
	})
}
