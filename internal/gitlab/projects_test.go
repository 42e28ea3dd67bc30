package gitlab_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/test/gitlabsim"
)

func TestGetProject(t *testing.T) {
	f := setup(t)
	if _, err := f.sim.CreateProject(gitlabsim.ProjectSpec{Path: "team/private", Visibility: "private", Files: map[string]string{"a": "b"},
		Members: []gitlabsim.Member{{Username: "maintainer", Role: gitlabsim.RoleMaintainer}}}); err != nil {
		t.Fatal(err)
	}
	bot := f.client(t, "bot")
	p, err := bot.GetProject(ctx(t), project)
	if err != nil || p.ID == 0 || p.PathWithNamespace != project || p.DefaultBranch != "main" {
		t.Fatalf("by path: %+v %v", p, err)
	}
	byID, err := bot.GetProject(ctx(t), strconv.FormatInt(p.ID, 10))
	if err != nil || byID != p {
		t.Fatalf("by id: %+v %v", byID, err)
	}
	// A project lotse's user cannot see is not found, like one that does not exist.
	for _, ref := range []string{"team/private", "team/nothing"} {
		if _, err := bot.GetProject(ctx(t), ref); !errors.Is(err, gitlab.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", ref, err)
		}
	}
}
