// Package doctor checks a GitOps project as lotse's GitLab user sees it:
// lotse.yaml, the user's role, the protection of the default branch and of
// lotse/*, who may merge, lotsed's webhook, the apps' source projects and
// the signing key. Each finding says what is wrong and how to fix it, with
// the GitLab settings page and the API call.
//
// It reads only, through a narrow Client; it logs nothing and reads no
// environment.
package doctor

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/trust"
	"github.com/lotse/lotse/internal/writeback"
)

// Client is the part of the GitLab client the checks read through; a
// *gitlab.Client satisfies it.
type Client interface {
	CurrentUser(ctx context.Context) (gitlab.User, error)
	UserByUsername(ctx context.Context, username string) (gitlab.User, error)
	GetProject(ctx context.Context, project string) (gitlab.Project, error)
	File(ctx context.Context, project, path, ref string) (gitlab.File, error)
	Member(ctx context.Context, project string, userID int64) (gitlab.Member, error)
	Members(ctx context.Context, project string) ([]gitlab.Member, error)
	ProtectedBranches(ctx context.Context, project string) ([]gitlab.ProtectedBranch, error)
	Hooks(ctx context.Context, project string) ([]gitlab.Hook, error)
}

// Options say which project to check and what lotsed is configured with.
type Options struct {
	// Project is the GitOps project's path, e.g. platform/gitops. Required.
	Project string
	// LotsedURL is lotsed's public URL: the webhook must deliver to
	// LotsedURL + "/webhooks/gitlab". Empty: any hook whose path is
	// /webhooks/gitlab is taken for lotsed's.
	LotsedURL string
	// BotUsername is lotse's GitLab user (lotsed's --bot-user). Empty: the
	// token's user.
	BotUsername string
	// PublicKey is lotsed's own --public-key, which wins over lotse.yaml's
	// signing.publicKey. Empty: lotse.yaml's is used.
	PublicKey string
}

// Severity says how bad a failed check is.
type Severity string

// Severities. An error breaks promotions or four-eyes; a warning is
// something a platform team would want to know.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// The checks, as they appear in Finding.Check.
const (
	CheckProject          = "project"
	CheckConfig           = "lotse-yaml"
	CheckDefaultBranch    = "default-branch"
	CheckBotRole          = "bot-role"
	CheckProtectDefault   = "protect-default-branch"
	CheckProtectPromotion = "protect-lotse-branches"
	CheckMergeAccess      = "merge-access"
	CheckApprovers        = "approvers"
	CheckWebhook          = "webhook"
	CheckSigningKey       = "signing-key"
	CheckSourceProject    = "source-project"
)

// Finding is the outcome of one check.
type Finding struct {
	Check string `json:"check"`
	OK    bool   `json:"ok"`
	// Severity is set when the check failed.
	Severity Severity `json:"severity,omitempty"`
	// Detail says what was found, also when the check passed.
	Detail string `json:"detail,omitempty"`
	// Problem says what is wrong and what it breaks; empty when OK.
	Problem string `json:"problem,omitempty"`
	// Fix says how to fix it: the GitLab settings page and the API call.
	Fix string `json:"fix,omitempty"`
}

// Report is the outcome of all checks, in the order they ran.
type Report struct {
	Project string `json:"project"`
	// OK is true when no finding is an error (warnings may remain).
	OK       bool      `json:"ok"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
	Findings []Finding `json:"findings"`
}

// Check runs every check against opts.Project and returns the findings. It
// never fails as a whole: what it cannot read is a finding.
func Check(ctx context.Context, gl Client, opts Options) Report {
	d := &doctor{gl: gl, opts: opts, api: "/api/v4/projects/" + url.PathEscape(opts.Project)}
	d.run(ctx)
	r := Report{Project: opts.Project, Findings: d.findings}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	for _, f := range r.Findings {
		switch {
		case f.OK:
		case f.Severity == SeverityError:
			r.Errors++
		default:
			r.Warnings++
		}
	}
	r.OK = r.Errors == 0
	return r
}

type doctor struct {
	gl       Client
	opts     Options
	api      string // the project's API path, for the fixes
	findings []Finding

	cfg     *gitops.Config  // nil when lotse.yaml is unusable
	branch  string          // the default branch
	bot     *gitlab.User    // nil when unknown
	botRole *gitlab.Member  // nil when unknown
	members []gitlab.Member // nil when unreadable
}

func (d *doctor) ok(check, detail string) {
	d.findings = append(d.findings, Finding{Check: check, OK: true, Detail: detail})
}

func (d *doctor) fail(check string, sev Severity, detail, problem, fix string) {
	d.findings = append(d.findings, Finding{Check: check, Severity: sev, Detail: detail, Problem: problem, Fix: fix})
}

func (d *doctor) run(ctx context.Context) {
	if strings.TrimSpace(d.opts.Project) == "" {
		d.fail(CheckProject, SeverityError, "", "no GitOps project given", "give the GitOps project's path (lotse doctor --gitops-project, lotsed LOTSE_GITOPS_PROJECT)")
		return
	}
	p, err := d.gl.GetProject(ctx, d.opts.Project)
	if err != nil {
		problem := fmt.Sprintf("cannot read %s: %v", d.opts.Project, err)
		if errors.Is(err, gitlab.ErrNotFound) {
			problem = fmt.Sprintf("%s does not exist or lotse's user cannot see it", d.opts.Project)
		}
		d.fail(CheckProject, SeverityError, "", problem,
			"check the project path and the token, and make lotse's user a Maintainer of the project (Manage › Members)")
		return
	}
	d.ok(CheckProject, fmt.Sprintf("%s (id %d, default branch %s)", p.PathWithNamespace, p.ID, p.DefaultBranch))
	d.branch = p.DefaultBranch
	d.config(ctx, p)
	d.botUser(ctx)
	if ms, err := d.gl.Members(ctx, d.opts.Project); err == nil {
		d.members = ms
	}
	rules, err := d.gl.ProtectedBranches(ctx, d.opts.Project)
	if err != nil {
		fix := "give lotse's user the Maintainer role on " + d.opts.Project + " (Manage › Members)"
		for _, c := range []string{CheckProtectDefault, CheckProtectPromotion, CheckMergeAccess} {
			d.fail(c, SeverityError, "", fmt.Sprintf("cannot read the protected branches of %s: %v", d.opts.Project, err), fix)
		}
	} else {
		d.protectDefault(rules)
		d.protectPromotion(rules)
		d.mergeAccess(rules)
	}
	d.approvers()
	d.webhook(ctx)
	d.signingKey(ctx)
	d.sourceProjects(ctx)
}

// config reads lotse.yaml from the default branch as lotse does.
func (d *doctor) config(ctx context.Context, p gitlab.Project) {
	f, err := d.gl.File(ctx, d.opts.Project, writeback.ConfigFile, "HEAD")
	if err != nil {
		problem := fmt.Sprintf("cannot read %s of %s: %v", writeback.ConfigFile, d.opts.Project, err)
		fix := "lotse's user needs at least the Reporter role to read it (Maintainer to promote)"
		if errors.Is(err, gitlab.ErrNotFound) {
			problem = fmt.Sprintf("%s is not on the default branch of %s: lotse and lotsed have nothing to promote", writeback.ConfigFile, d.opts.Project)
			fix = "commit a lotse.yaml at the root of the default branch (lotse init gitops writes one)"
		}
		d.fail(CheckConfig, SeverityError, "", problem, fix)
		return
	}
	cfg, err := gitops.ParseConfig(f.Content, d.opts.Project+":"+writeback.ConfigFile)
	if err != nil {
		d.fail(CheckConfig, SeverityError, "", err.Error(),
			"fix lotse.yaml on the default branch (lotse config validate lotse.yaml checks it locally; lotse.schema.json helps editors)")
		return
	}
	numeric := strings.Trim(d.opts.Project, "0123456789") == ""
	if !numeric && !strings.EqualFold(cfg.GitLab.Project, d.opts.Project) && !strings.EqualFold(cfg.GitLab.Project, p.PathWithNamespace) {
		d.fail(CheckConfig, SeverityError, "",
			fmt.Sprintf("lotse.yaml says gitlab.project %q, not %s: lotse refuses to write a project whose lotse.yaml belongs to another one", cfg.GitLab.Project, d.opts.Project),
			fmt.Sprintf("set gitlab.project: %s in lotse.yaml (or point lotse at %s)", p.PathWithNamespace, cfg.GitLab.Project))
		return
	}
	d.cfg = cfg
	apps := make([]string, len(cfg.Apps))
	for i, a := range cfg.Apps {
		apps[i] = a.Name
	}
	d.ok(CheckConfig, fmt.Sprintf("valid, gitlab.project %s, apps: %s", cfg.GitLab.Project, strings.Join(apps, ", ")))
	if p.DefaultBranch != "" && cfg.GitLab.DefaultBranch != p.DefaultBranch {
		d.fail(CheckDefaultBranch, SeverityError, "",
			fmt.Sprintf("lotse.yaml says defaultBranch %s but the project's default branch is %s: lotse reads lotse.yaml from %s and writes releases to %s",
				cfg.GitLab.DefaultBranch, p.DefaultBranch, p.DefaultBranch, cfg.GitLab.DefaultBranch),
			fmt.Sprintf("set gitlab.defaultBranch: %s in lotse.yaml, or make %s the default branch (Settings › Repository › Branch defaults; PUT %s -d default_branch=%s)",
				p.DefaultBranch, cfg.GitLab.DefaultBranch, d.api, cfg.GitLab.DefaultBranch))
		d.branch = cfg.GitLab.DefaultBranch
		return
	}
	d.branch = cfg.GitLab.DefaultBranch
	d.ok(CheckDefaultBranch, fmt.Sprintf("%s, the branch lotse.yaml names and ArgoCD should watch", d.branch))
}

// botUser finds lotse's user and its role on the GitOps project.
func (d *doctor) botUser(ctx context.Context) {
	var u gitlab.User
	var err error
	if d.opts.BotUsername != "" {
		u, err = d.gl.UserByUsername(ctx, d.opts.BotUsername)
	} else {
		u, err = d.gl.CurrentUser(ctx)
	}
	if err != nil {
		d.fail(CheckBotRole, SeverityError, "", fmt.Sprintf("cannot tell who lotse's user is: %v", err),
			"check the token (it needs the api scope) and the bot's username")
		return
	}
	d.bot = &u
	m, err := d.gl.Member(ctx, d.opts.Project, u.ID)
	fix := fmt.Sprintf("Manage › Members › Invite members: %s, role Maintainer (POST %s/members -d user_id=%d -d access_level=40; PUT %s/members/%d -d access_level=40 if already a member)",
		u.Username, d.api, u.ID, d.api, u.ID)
	switch {
	case errors.Is(err, gitlab.ErrNotFound):
		d.fail(CheckBotRole, SeverityError, "", fmt.Sprintf("%s is not a member of %s: it cannot push to %s or merge promotion MRs", u.Username, d.opts.Project, d.branchName()), fix)
	case err != nil:
		d.fail(CheckBotRole, SeverityError, "", fmt.Sprintf("cannot read the role of %s: %v", u.Username, err), fix)
	case m.State != "" && m.State != "active":
		d.botRole = &m
		d.fail(CheckBotRole, SeverityError, fmt.Sprintf("%s is %s", u.Username, roleName(m.AccessLevel)),
			fmt.Sprintf("%s is %s in GitLab: it can do nothing", u.Username, m.State), "unblock the user (Admin area › Users)")
	case m.AccessLevel < gitlab.AccessMaintainer:
		d.botRole = &m
		d.fail(CheckBotRole, SeverityError, fmt.Sprintf("%s is %s", u.Username, roleName(m.AccessLevel)),
			fmt.Sprintf("%s is %s, not Maintainer: with the default branch and lotse/* protected for Maintainers it can neither commit releases nor merge promotions, nor read the webhooks",
				u.Username, roleName(m.AccessLevel)), fix)
	default:
		d.botRole = &m
		d.ok(CheckBotRole, fmt.Sprintf("%s is %s", u.Username, roleName(m.AccessLevel)))
	}
}

func (d *doctor) branchName() string {
	if d.branch == "" {
		return "the default branch"
	}
	return d.branch
}

// promotionBranch is a branch lotse promotes through, to match the rules
// against.
func (d *doctor) promotionBranch() string {
	if d.cfg != nil {
		for _, a := range d.cfg.Apps {
			if len(a.Stages) > 0 {
				return gitops.BranchName(a.Name, a.Stages[len(a.Stages)-1])
			}
		}
	}
	return gitops.BranchName("app", "stage")
}

// access is what the rules matching one branch allow.
type access struct {
	rules       []string // names of the matching rules
	pushRoles   []gitlab.AccessLevel
	mergeRoles  []gitlab.AccessLevel
	pushOthers  []string // users, groups, deploy keys
	mergeOthers []string
	// strangers are users other than lotse's and deploy keys; groups are
	// groups, whose members lotse cannot see.
	pushStrangers, mergeStrangers []string
	pushGroups, mergeGroups       []string
	forcePush                     bool
	botMayPush                    bool
	botMayMerge                   bool
}

// accessTo collects what the rules matching branch allow; GitLab lets the
// most permissive matching rule decide, so all of them count.
func (d *doctor) accessTo(rules []gitlab.ProtectedBranch, branch string) access {
	var a access
	for _, r := range rules {
		if !r.Matches(branch) {
			continue
		}
		a.rules = append(a.rules, r.Name)
		a.forcePush = a.forcePush || r.AllowForcePush
		for _, e := range r.Push {
			if d.entry(e, &a.pushRoles, &a.pushOthers) {
				a.botMayPush = true
			}
			d.sortOut(e, &a.pushStrangers, &a.pushGroups)
		}
		for _, e := range r.Merge {
			if d.entry(e, &a.mergeRoles, &a.mergeOthers) {
				a.botMayMerge = true
			}
			d.sortOut(e, &a.mergeStrangers, &a.mergeGroups)
		}
	}
	return a
}

// entry sorts one access entry into roles or others and reports whether it
// lets lotse's user in.
func (d *doctor) entry(e gitlab.BranchAccess, roles *[]gitlab.AccessLevel, others *[]string) bool {
	switch {
	case e.UserID != 0:
		if d.bot != nil && e.UserID == d.bot.ID {
			*others = append(*others, "user "+d.bot.Username+" (lotse)")
			return true
		}
		*others = append(*others, "user "+d.userName(e.UserID))
	case e.GroupID != 0:
		*others = append(*others, fmt.Sprintf("group #%d", e.GroupID))
	case e.DeployKeyID != 0:
		*others = append(*others, fmt.Sprintf("deploy key #%d", e.DeployKeyID))
	default:
		if !slices.Contains(*roles, e.Level) {
			*roles = append(*roles, e.Level)
		}
		// lotse's user is to be a Maintainer (bot-role checks that): a
		// rule lets it in when it admits Maintainers.
		bot := gitlab.AccessMaintainer
		if d.botRole != nil {
			bot = max(bot, d.botRole.AccessLevel)
		}
		return e.Level != gitlab.AccessNoOne && e.Level <= bot
	}
	return false
}

// sortOut files an entry that names someone other than lotse's user.
func (d *doctor) sortOut(e gitlab.BranchAccess, strangers, groups *[]string) {
	switch {
	case e.UserID != 0 && (d.bot == nil || e.UserID != d.bot.ID):
		*strangers = append(*strangers, "user "+d.userName(e.UserID))
	case e.UserID == 0 && e.GroupID != 0:
		*groups = append(*groups, fmt.Sprintf("group #%d", e.GroupID))
	case e.UserID == 0 && e.DeployKeyID != 0:
		*strangers = append(*strangers, fmt.Sprintf("deploy key #%d", e.DeployKeyID))
	}
}

func (d *doctor) userName(id int64) string {
	for _, m := range d.members {
		if m.User.ID == id {
			return m.User.Username
		}
	}
	return fmt.Sprintf("#%d", id)
}

// weak lists the role entries below Maintainer other than No one.
func weak(levels []gitlab.AccessLevel) []string {
	var out []string
	for _, l := range levels {
		if l != gitlab.AccessNoOne && l < gitlab.AccessMaintainer {
			out = append(out, levelName(l))
		}
	}
	return out
}

func (d *doctor) protectFix(name string) string {
	return fmt.Sprintf("Settings › Repository › Protected branches: %s, Allowed to merge: Maintainers, Allowed to push and merge: Maintainers, Allowed to force push: off "+
		"(or by API: DELETE %s/protected_branches/%s, then POST %s/protected_branches -d name=%s -d push_access_level=40 -d merge_access_level=40 -d allow_force_push=false)",
		name, d.api, url.PathEscape(name), d.api, name)
}

// protectDefault checks that only Maintainers may push to and merge into
// the default branch, and that lotse's user may.
func (d *doctor) protectDefault(rules []gitlab.ProtectedBranch) {
	if d.branch == "" {
		d.fail(CheckProtectDefault, SeverityError, "", "the project has no default branch (no commits)", "push lotse.yaml and the values files first")
		return
	}
	b := d.branch
	a := d.accessTo(rules, b)
	fix := d.protectFix(b)
	if len(a.rules) == 0 {
		d.fail(CheckProtectDefault, SeverityError, "",
			fmt.Sprintf("%s is not protected: every Developer can push to it and merge into it, past lotse's gates and four-eyes", b), fix)
		return
	}
	detail := fmt.Sprintf("%s (rules %s): push %s, merge %s", b, strings.Join(a.rules, ", "), describe(a.pushRoles, a.pushOthers), describe(a.mergeRoles, a.mergeOthers))
	var problems []string
	if w := weak(a.pushRoles); len(w) > 0 {
		problems = append(problems, fmt.Sprintf("%s may push to %s: they can change any stage without lotse", strings.Join(w, ", "), b))
	}
	if w := weak(a.mergeRoles); len(w) > 0 {
		problems = append(problems, fmt.Sprintf("%s may merge into %s: they can merge a promotion MR themselves, without the approvals lotsed counts", strings.Join(w, ", "), b))
	}
	if len(a.pushStrangers) > 0 {
		problems = append(problems, fmt.Sprintf("%s may push to %s: they can change any stage without lotse", strings.Join(a.pushStrangers, ", "), b))
	}
	if len(a.mergeStrangers) > 0 {
		problems = append(problems, fmt.Sprintf("%s may merge into %s: without the approvals lotsed counts", strings.Join(a.mergeStrangers, ", "), b))
	}
	if a.forcePush {
		problems = append(problems, fmt.Sprintf("force push to %s is allowed: history (and lotse's trailers) can be rewritten", b))
	}
	if !a.botMayPush {
		problems = append(problems, fmt.Sprintf("lotse's user may not push to %s: it cannot commit releases into commit stages", b))
	}
	if !a.botMayMerge {
		problems = append(problems, fmt.Sprintf("lotse's user may not merge into %s: it cannot merge promotion MRs", b))
	}
	if len(problems) > 0 {
		d.fail(CheckProtectDefault, SeverityError, detail, strings.Join(append(problems, groupsProblem(a.pushGroups, a.mergeGroups)...), "; "), fix)
		return
	}
	if g := groupsProblem(a.pushGroups, a.mergeGroups); len(g) > 0 {
		d.fail(CheckProtectDefault, SeverityWarning, detail, strings.Join(g, "; "), fix)
		return
	}
	d.ok(CheckProtectDefault, detail)
}

// protectPromotion checks that only Maintainers may push to lotse/*.
func (d *doctor) protectPromotion(rules []gitlab.ProtectedBranch) {
	b := d.promotionBranch()
	a := d.accessTo(rules, b)
	fix := d.protectFix("lotse/*")
	if len(a.rules) == 0 {
		d.fail(CheckProtectPromotion, SeverityError, "",
			fmt.Sprintf("lotse/* is not protected (no rule matches %s): a Developer can push onto lotse's promotion branches; lotsed closes such MRs as tampered, but protect them", b), fix)
		return
	}
	detail := fmt.Sprintf("%s (rules %s): push %s", b, strings.Join(a.rules, ", "), describe(a.pushRoles, a.pushOthers))
	var problems []string
	if w := weak(a.pushRoles); len(w) > 0 {
		problems = append(problems, fmt.Sprintf("%s may push to %s: they can push onto lotse's promotion MRs", strings.Join(w, ", "), b))
	}
	if len(a.pushStrangers) > 0 {
		problems = append(problems, fmt.Sprintf("%s may push to %s: they can push onto lotse's promotion MRs", strings.Join(a.pushStrangers, ", "), b))
	}
	if !a.botMayPush {
		problems = append(problems, fmt.Sprintf("lotse's user may not push to %s: it cannot open promotion MRs", b))
	}
	if len(problems) > 0 {
		d.fail(CheckProtectPromotion, SeverityError, detail, strings.Join(append(problems, groupsProblem(a.pushGroups, nil)...), "; "), fix)
		return
	}
	if g := groupsProblem(a.pushGroups, nil); len(g) > 0 {
		d.fail(CheckProtectPromotion, SeverityWarning, detail, strings.Join(g, "; "), fix)
		return
	}
	d.ok(CheckProtectPromotion, detail)
}

// mergeAccess lists who may merge into the default branch and warns when it
// is anybody but lotse's user.
func (d *doctor) mergeAccess(rules []gitlab.ProtectedBranch) {
	if d.branch == "" {
		return
	}
	a := d.accessTo(rules, d.branch)
	if len(a.rules) == 0 {
		d.fail(CheckMergeAccess, SeverityWarning, "everyone with Developer or more", "anyone with Developer or more may merge into "+d.branch,
			d.protectFix(d.branch))
		return
	}
	var who []string
	minRole := gitlab.AccessLevel(0)
	for _, l := range a.mergeRoles {
		if l != gitlab.AccessNoOne && (minRole == 0 || l < minRole) {
			minRole = l
		}
	}
	var others []string // people besides lotse's user
	if minRole > 0 && d.members != nil {
		for _, m := range d.members {
			if m.AccessLevel < minRole || (m.State != "" && m.State != "active") {
				continue
			}
			who = append(who, fmt.Sprintf("%s (%s)", m.User.Username, roleName(m.AccessLevel)))
			if d.bot == nil || m.User.ID != d.bot.ID {
				others = append(others, m.User.Username)
			}
		}
	}
	detail := "merge " + describe(a.mergeRoles, a.mergeOthers)
	if len(who) > 0 {
		detail += ": " + strings.Join(who, ", ")
	} else if minRole > 0 && d.members == nil {
		detail += " (the members could not be read)"
	} else if minRole > 0 {
		detail += " (no member has that role)"
	}
	var problems []string
	if w := weak(a.mergeRoles); len(w) > 0 {
		problems = append(problems, strings.Join(w, ", ")+" may merge")
	}
	for _, o := range a.mergeOthers {
		if !strings.HasSuffix(o, "(lotse)") {
			problems = append(problems, o+" may merge")
		}
	}
	if len(others) > 0 {
		problems = append(problems, fmt.Sprintf("besides lotse's user, %s may merge into %s (and push to it): four-eyes holds only while they do not", strings.Join(others, ", "), d.branch))
	}
	if len(problems) > 0 {
		d.fail(CheckMergeAccess, SeverityWarning, detail, strings.Join(problems, "; "),
			"give humans the Developer role on "+d.opts.Project+" and only lotse's user Maintainer (Manage › Members); on Premium name lotse's user in Allowed to merge and push instead of a role")
		return
	}
	d.ok(CheckMergeAccess, detail)
}

// groupsProblem warns of groups allowed to push or merge: lotse cannot
// read who is in them.
func groupsProblem(push, merge []string) []string {
	var out []string
	if len(push) > 0 {
		out = append(out, strings.Join(push, ", ")+" may push: lotse cannot see who is in a group; it must hold lotse's user only")
	}
	if len(merge) > 0 {
		out = append(out, strings.Join(merge, ", ")+" may merge: lotse cannot see who is in a group; it must hold lotse's user only")
	}
	return out
}

// approvers checks that every approval stage can get its approvals: enough
// active members besides lotse's user with the Developer role or more,
// which GitLab requires to approve.
func (d *doctor) approvers() {
	if d.cfg == nil {
		return
	}
	need, stage := 0, ""
	for _, s := range d.cfg.Stages {
		if s.Promotion == gitops.PromotionApproval && s.Approvals > need {
			need, stage = s.Approvals, s.Name
		}
	}
	if need == 0 {
		return
	}
	if d.members == nil {
		d.fail(CheckApprovers, SeverityWarning, "", "the project's members could not be read, so whether "+stage+" can get its approvals is unknown",
			"give lotse's user the Maintainer role (Manage › Members)")
		return
	}
	var can []string
	for _, m := range d.members {
		if m.AccessLevel >= gitlab.AccessDeveloper && (m.State == "" || m.State == "active") && (d.bot == nil || m.User.ID != d.bot.ID) {
			can = append(can, m.User.Username)
		}
	}
	detail := fmt.Sprintf("%s needs %d approval(s); may approve: %s", stage, need, orNone(can))
	if len(can) < need {
		d.fail(CheckApprovers, SeverityError, detail,
			fmt.Sprintf("%s needs %d distinct approvers besides lotse's user, but only %d member(s) may approve: its promotions can never be merged (and authors of a change do not count)", stage, need, len(can)),
			fmt.Sprintf("add approvers with the Developer role (Manage › Members; POST %s/members -d user_id=… -d access_level=30), or lower approvals in lotse.yaml", d.api))
		return
	}
	d.ok(CheckApprovers, detail)
}

// describe names roles and other entries for people.
func describe(roles []gitlab.AccessLevel, others []string) string {
	var parts []string
	for _, l := range roles {
		parts = append(parts, levelName(l))
	}
	parts = append(parts, others...)
	if len(parts) == 0 {
		return "No one"
	}
	return strings.Join(parts, ", ")
}

// roleName names a member's role.
func roleName(l gitlab.AccessLevel) string {
	switch l {
	case gitlab.AccessGuest:
		return "Guest"
	case gitlab.AccessReporter:
		return "Reporter"
	case gitlab.AccessDeveloper:
		return "Developer"
	case gitlab.AccessMaintainer:
		return "Maintainer"
	case gitlab.AccessOwner:
		return "Owner"
	case gitlab.AccessAdmin:
		return "Admin"
	}
	return fmt.Sprintf("access level %d", l)
}

// levelName names a protected branch's role entry as GitLab's settings do.
func levelName(l gitlab.AccessLevel) string {
	switch l {
	case gitlab.AccessNoOne:
		return "No one"
	case gitlab.AccessDeveloper:
		return "Developers + Maintainers"
	case gitlab.AccessMaintainer:
		return "Maintainers"
	case gitlab.AccessAdmin:
		return "Admins"
	}
	return roleName(l) + "s"
}

// webhook checks lotsed's project hook and its events.
func (d *doctor) webhook(ctx context.Context) {
	want := ""
	if d.opts.LotsedURL != "" {
		want = strings.TrimRight(d.opts.LotsedURL, "/") + "/webhooks/gitlab"
	}
	target := want
	if target == "" {
		target = "https://<lotsed>/webhooks/gitlab"
	}
	addFix := fmt.Sprintf("Settings › Webhooks › Add new webhook: URL %s, the secret token (or signing token) lotsed has, triggers Push events, Merge request events, Comments, Pipeline events "+
		"(or POST %s/hooks -d url=%s -d token=$WEBHOOK_SECRET -d push_events=true -d merge_requests_events=true -d note_events=true -d pipeline_events=true); lotse sees project webhooks only, not a group's",
		target, d.api, target)
	hs, err := d.gl.Hooks(ctx, d.opts.Project)
	if err != nil {
		problem := fmt.Sprintf("cannot list the webhooks of %s: %v", d.opts.Project, err)
		if errors.Is(err, gitlab.ErrUnauthorized) {
			problem = fmt.Sprintf("lotse's user cannot list the webhooks of %s (they need the Maintainer role)", d.opts.Project)
		}
		d.fail(CheckWebhook, SeverityError, "", problem, "give lotse's user the Maintainer role (Manage › Members), then check again")
		return
	}
	var found []gitlab.Hook
	for _, h := range hs {
		if hookMatches(h.URL, want) {
			found = append(found, h)
		}
	}
	if len(found) == 0 {
		d.fail(CheckWebhook, SeverityError, fmt.Sprintf("%d other webhook(s)", len(hs)),
			fmt.Sprintf("no webhook of %s delivers to %s: lotsed never hears of landings, approvals or comments, and nothing is promoted", d.opts.Project, target), addFix)
		return
	}
	h := found[0]
	detail := fmt.Sprintf("hook #%d %s", h.ID, redact(h.URL))
	var errs, warns []string
	var missing []string
	for _, ev := range []struct {
		on   bool
		name string
	}{{h.PushEvents, "push"}, {h.MergeRequestsEvents, "merge request"}, {h.NoteEvents, "comment (note)"}, {h.PipelineEvents, "pipeline"}} {
		if !ev.on {
			missing = append(missing, ev.name)
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Sprintf("the hook does not send %s events, which lotsed needs", strings.Join(missing, ", ")))
	}
	if f := h.PushEventsBranchFilter; h.PushEvents && f != "" && d.branch != "" && !(gitlab.ProtectedBranch{Name: f}).Matches(d.branch) {
		errs = append(errs, fmt.Sprintf("its push events are filtered to %q, which leaves out %s", f, d.branch))
	}
	if h.AlertStatus != "" && h.AlertStatus != "executable" {
		errs = append(errs, fmt.Sprintf("GitLab has %s the hook after failed deliveries", strings.ReplaceAll(h.AlertStatus, "_", " ")))
	}
	if strings.HasPrefix(strings.ToLower(h.URL), "https:") && !h.EnableSSLVerification {
		warns = append(warns, "SSL verification is off: anyone on the path can read and forge deliveries")
	}
	if len(found) > 1 {
		warns = append(warns, fmt.Sprintf("%d hooks deliver to lotsed: every event arrives more than once", len(found)))
	}
	editFix := fmt.Sprintf("Settings › Webhooks › Edit hook #%d: triggers Push events (all branches or %s), Merge request events, Comments, Pipeline events; SSL verification on; Enable if disabled "+
		"(or PUT %s/hooks/%d -d url=%s -d push_events=true -d push_events_branch_filter= -d merge_requests_events=true -d note_events=true -d pipeline_events=true -d enable_ssl_verification=true)",
		h.ID, d.branchName(), d.api, h.ID, redact(h.URL))
	switch {
	case len(errs) > 0:
		d.fail(CheckWebhook, SeverityError, detail, strings.Join(append(errs, warns...), "; "), editFix)
	case len(warns) > 0:
		d.fail(CheckWebhook, SeverityWarning, detail, strings.Join(warns, "; "), editFix)
	default:
		d.ok(CheckWebhook, detail+": push, merge request, comment and pipeline events (its secret token is not shown by GitLab: lotsed refuses deliveries without it)")
	}
}

// redact drops what may carry a secret from a hook URL for the report:
// user info, query and fragment.
func redact(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment, u.RawFragment = nil, "", "", ""
	u.ForceQuery = false
	return u.String()
}

// hookMatches compares a hook URL with lotsed's; scheme and host ignore
// case, a trailing slash does not count. An empty want takes any URL whose
// path is /webhooks/gitlab.
func hookMatches(got, want string) bool {
	g, err := url.Parse(strings.TrimSpace(got))
	if err != nil {
		return false
	}
	gp := strings.TrimRight(g.Path, "/")
	if want == "" {
		return strings.HasSuffix(gp, "/webhooks/gitlab")
	}
	w, err := url.Parse(want)
	if err != nil {
		return false
	}
	return strings.EqualFold(g.Scheme, w.Scheme) && strings.EqualFold(g.Host, w.Host) && gp == strings.TrimRight(w.Path, "/")
}

// signingKey checks that the key the signature gates verify with exists.
func (d *doctor) signingKey(ctx context.Context) {
	if d.opts.PublicKey != "" {
		d.ok(CheckSigningKey, fmt.Sprintf("lotsed's own public key %s (it wins over signing.publicKey)", d.opts.PublicKey))
		return
	}
	if d.cfg == nil {
		return
	}
	ref := d.cfg.Signing.PublicKey
	var gated []string
	for _, s := range d.cfg.Stages {
		if s.Gates.Signature {
			gated = append(gated, s.Name)
		}
	}
	switch {
	case d.cfg.Signing.Keyless != nil:
		d.keyless(ctx, *d.cfg.Signing.Keyless, gated)
		return
	case ref == "":
		d.fail(CheckSigningKey, SeverityWarning, "no signing.publicKey or signing.keyless",
			"lotse.yaml names no public key and no keyless signer: no stage can require a signature, so an unsigned image reaches production",
			"commit cosign.pub (cosign generate-key-pair) and set signing.publicKey: cosign.pub, or a KMS URI, or signing.keyless (issuer, identity); then gates: {signature: true} on the stages")
		return
	case strings.Contains(ref, "://"):
		d.ok(CheckSigningKey, fmt.Sprintf("signing.publicKey %s (a URI lotsed resolves; its credentials are lotsed's)", ref))
		return
	}
	f, err := d.gl.File(ctx, d.opts.Project, ref, d.branchName())
	fix := fmt.Sprintf("commit the cosign public key as %s on %s (cosign generate-key-pair writes cosign.pub), or point signing.publicKey at the right path or a KMS URI", ref, d.branchName())
	if errors.Is(err, gitlab.ErrNotFound) {
		d.fail(CheckSigningKey, SeverityError, "", fmt.Sprintf("signing.publicKey %s is not in %s on %s: the signature gates of %s fail every image",
			ref, d.opts.Project, d.branchName(), orNone(gated)), fix)
		return
	}
	if err != nil {
		d.fail(CheckSigningKey, SeverityError, "", fmt.Sprintf("cannot read signing.publicKey %s: %v", ref, err), fix)
		return
	}
	if err := publicKey(f.Content); err != nil {
		d.fail(CheckSigningKey, SeverityError, "", fmt.Sprintf("signing.publicKey %s is not a public key: %v", ref, err), fix)
		return
	}
	d.ok(CheckSigningKey, fmt.Sprintf("signing.publicKey %s is a public key; signature gates: %s", ref, orNone(gated)))
}

// keyless checks signing.keyless: its trusted root is in the repository,
// and its identity is not one any project's pipeline has.
func (d *doctor) keyless(ctx context.Context, k trust.Keyless, gated []string) {
	who := "identity " + k.Identity
	if k.IdentityRegexp != "" {
		who = "identity matching " + k.AnchoredIdentityRegexp()
	}
	root := "Sigstore's public-good instance"
	if k.TrustedRoot != "" {
		root = "trusted root " + k.TrustedRoot
	}
	detail := fmt.Sprintf("signing.keyless: issuer %s, %s, %s; signature gates: %s", k.Issuer, who, root, orNone(gated))
	if k.TrustedRoot != "" {
		fix := fmt.Sprintf("commit the Sigstore trusted_root.json as %s on %s, or correct signing.keyless.trustedRoot", k.TrustedRoot, d.branchName())
		f, err := d.gl.File(ctx, d.opts.Project, k.TrustedRoot, d.branchName())
		if errors.Is(err, gitlab.ErrNotFound) {
			d.fail(CheckSigningKey, SeverityError, detail, fmt.Sprintf("signing.keyless.trustedRoot %s is not in %s on %s: the signature gates of %s fail every image",
				k.TrustedRoot, d.opts.Project, d.branchName(), orNone(gated)), fix)
			return
		}
		if err != nil {
			d.fail(CheckSigningKey, SeverityError, detail, fmt.Sprintf("cannot read signing.keyless.trustedRoot %s: %v", k.TrustedRoot, err), fix)
			return
		}
		var tr struct {
			MediaType string `json:"mediaType"`
		}
		if err := json.Unmarshal(f.Content, &tr); err != nil || !strings.HasPrefix(tr.MediaType, "application/vnd.dev.sigstore.trustedroot") {
			d.fail(CheckSigningKey, SeverityError, detail, fmt.Sprintf("signing.keyless.trustedRoot %s is not a Sigstore trusted root (no trustedroot mediaType)", k.TrustedRoot), fix)
			return
		}
	}
	if k.IdentityRegexp != "" {
		re, err := regexp.Compile(k.AnchoredIdentityRegexp())
		stranger := strings.TrimRight(k.Issuer, "/") + "/someone-else/any-project//.gitlab-ci.yml@refs/heads/main"
		if err == nil && re.MatchString(stranger) {
			d.fail(CheckSigningKey, SeverityWarning, detail,
				fmt.Sprintf("signing.keyless.identityRegexp also accepts %s: a pipeline of any project under that issuer can sign images that pass the gates", stranger),
				"name the app projects and their protected refs in identityRegexp, e.g. https://gitlab.example.com/team/shop//\\.gitlab-ci\\.yml@refs/heads/main, or use identity")
			return
		}
	}
	d.ok(CheckSigningKey, detail)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// publicKey checks that b is a PEM public key as cosign writes it.
func publicKey(b []byte) error {
	block, _ := pem.Decode(b)
	if block == nil {
		return errors.New("no PEM block")
	}
	if block.Type != "PUBLIC KEY" {
		return fmt.Errorf("a PEM %q block, want PUBLIC KEY (is it the private key?)", block.Type)
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		return err
	}
	return nil
}

// sourceProjects checks that lotse's user reads every app's source project
// and may post commit statuses there.
func (d *doctor) sourceProjects(ctx context.Context) {
	if d.cfg == nil {
		return
	}
	var order []string
	apps := map[string][]string{}
	for _, a := range d.cfg.Apps {
		if a.SourceProject == "" {
			continue
		}
		k := strings.ToLower(a.SourceProject)
		if _, ok := apps[k]; !ok {
			order = append(order, a.SourceProject)
		}
		apps[k] = append(apps[k], a.Name)
	}
	for _, sp := range order {
		d.sourceProject(ctx, sp, apps[strings.ToLower(sp)])
	}
}

func (d *doctor) sourceProject(ctx context.Context, sp string, apps []string) {
	label := fmt.Sprintf("%s (app %s)", sp, strings.Join(apps, ", "))
	api := "/api/v4/projects/" + url.PathEscape(sp)
	botName, botID := "lotse's user", "$BOT_ID"
	if d.bot != nil {
		botName, botID = d.bot.Username, fmt.Sprint(d.bot.ID)
	}
	fix := fmt.Sprintf("in %s: Manage › Members › Invite members: %s, role Developer (POST %s/members -d user_id=%s -d access_level=30)", sp, botName, api, botID)
	p, err := d.gl.GetProject(ctx, sp)
	if errors.Is(err, gitlab.ErrNotFound) {
		d.fail(CheckSourceProject, SeverityError, label,
			fmt.Sprintf("%s cannot read %s (not a member, or it does not exist): lotsed cannot read who wrote a change, so no approval counts, and cannot post commit statuses", botName, sp), fix)
		return
	}
	if err != nil {
		d.fail(CheckSourceProject, SeverityError, label, fmt.Sprintf("cannot read %s: %v", sp, err), fix)
		return
	}
	if d.bot == nil {
		d.fail(CheckSourceProject, SeverityWarning, label, "readable, but lotse's user is unknown, so its role cannot be checked", fix)
		return
	}
	m, err := d.gl.Member(ctx, sp, d.bot.ID)
	switch {
	case errors.Is(err, gitlab.ErrNotFound):
		d.fail(CheckSourceProject, SeverityError, label,
			fmt.Sprintf("%s reads %s but is not a member: it cannot post commit statuses there (Developer needed)", botName, p.PathWithNamespace), fix)
	case err != nil:
		d.fail(CheckSourceProject, SeverityError, label, fmt.Sprintf("cannot read the role of %s in %s: %v", botName, sp, err), fix)
	case m.AccessLevel < gitlab.AccessDeveloper:
		d.fail(CheckSourceProject, SeverityError, label,
			fmt.Sprintf("%s is %s in %s: it cannot post commit statuses there (Developer needed)", botName, roleName(m.AccessLevel), sp),
			fmt.Sprintf("in %s: Manage › Members: %s, role Developer (PUT %s/members/%d -d access_level=30)", sp, botName, api, d.bot.ID))
	default:
		d.ok(CheckSourceProject, fmt.Sprintf("%s: %s is %s", label, botName, roleName(m.AccessLevel)))
	}
}
