package doctor

import (
	"strings"
	"testing"

	"github.com/lotse/lotse/internal/gitlab"
)

// Premium rules name users, groups and deploy keys, which the simulator
// does not model: the rule logic is tested on its own.
func TestProtectionEntries(t *testing.T) {
	role := func(l gitlab.AccessLevel) gitlab.BranchAccess { return gitlab.BranchAccess{Level: l} }
	user := func(id int64) gitlab.BranchAccess { return gitlab.BranchAccess{UserID: id} }
	noOne := role(gitlab.AccessNoOne)
	tests := []struct {
		name          string
		rule          gitlab.ProtectedBranch
		wantDefault   Severity // "" passes
		wantPromotion Severity
		problem       string
	}{
		{name: "Premium: lotse's user alone", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{noOne, user(1)}, Merge: []gitlab.BranchAccess{noOne, user(1)}}},
		{name: "Premium: another user may push", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{user(1), user(7)}, Merge: []gitlab.BranchAccess{user(1)}},
			wantDefault: SeverityError, wantPromotion: SeverityError, problem: "user mallory may push"},
		{name: "Premium: another user may merge", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{user(1)}, Merge: []gitlab.BranchAccess{user(1), user(7)}},
			wantDefault: SeverityError, problem: "user mallory may merge into"},
		{name: "a deploy key may push", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{role(gitlab.AccessMaintainer), {DeployKeyID: 3}}, Merge: []gitlab.BranchAccess{role(gitlab.AccessMaintainer)}},
			wantDefault: SeverityError, wantPromotion: SeverityError, problem: "deploy key #3 may push"},
		{name: "a group may merge", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{user(1)}, Merge: []gitlab.BranchAccess{user(1), {GroupID: 9}}},
			wantDefault: SeverityWarning, problem: "group #9 may merge: lotse cannot see who is in a group"},
		{name: "no one, not even lotse", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{noOne}, Merge: []gitlab.BranchAccess{noOne}},
			wantDefault: SeverityError, wantPromotion: SeverityError, problem: "lotse's user may not push"},
		{name: "Admins only", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{role(gitlab.AccessAdmin)}, Merge: []gitlab.BranchAccess{role(gitlab.AccessAdmin)}},
			wantDefault: SeverityError, wantPromotion: SeverityError, problem: "lotse's user may not"},
		{name: "force push", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{role(gitlab.AccessMaintainer)}, Merge: []gitlab.BranchAccess{role(gitlab.AccessMaintainer)}, AllowForcePush: true},
			wantDefault: SeverityError, problem: "force push to main is allowed"},
		{name: "Developers may push", rule: gitlab.ProtectedBranch{Push: []gitlab.BranchAccess{role(gitlab.AccessDeveloper)}, Merge: []gitlab.BranchAccess{role(gitlab.AccessMaintainer)}},
			wantDefault: SeverityError, wantPromotion: SeverityError, problem: "Developers + Maintainers may push"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &doctor{branch: "main", bot: &gitlab.User{ID: 1, Username: "lotse-bot"}, botRole: &gitlab.Member{AccessLevel: gitlab.AccessMaintainer},
				members: []gitlab.Member{{User: gitlab.User{ID: 7, Username: "mallory"}, AccessLevel: gitlab.AccessDeveloper}}}
			main, lotse := tc.rule, tc.rule
			main.Name, lotse.Name = "main", "lotse/*"
			d.protectDefault([]gitlab.ProtectedBranch{main, lotse})
			d.protectPromotion([]gitlab.ProtectedBranch{main, lotse})
			if len(d.findings) != 2 {
				t.Fatalf("%+v", d.findings)
			}
			for i, want := range []Severity{tc.wantDefault, tc.wantPromotion} {
				f := d.findings[i]
				if f.OK != (want == "") || f.Severity != want {
					t.Errorf("%s: %+v, want severity %q", f.Check, f, want)
				}
			}
			if tc.problem != "" && !strings.Contains(d.findings[0].Problem+d.findings[1].Problem, tc.problem) {
				t.Errorf("no problem says %q: %+v", tc.problem, d.findings)
			}
		})
	}
}
