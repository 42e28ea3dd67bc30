package promotion

import (
	"fmt"
	"slices"
	"strings"
)

// ChatOps verbs.
const (
	VerbPromote  = "promote"
	VerbRollback = "rollback"
	VerbRetry    = "retry"
	VerbAccept   = "accept"
	VerbFreeze   = "freeze"
	VerbUnfreeze = "unfreeze"
)

// ParsedCommand is a ChatOps command read from an MR note.
type ParsedCommand struct {
	Verb   string // VerbPromote, VerbRollback, VerbRetry; empty when the command is not understood
	Stage  string
	Digest string // rollback only: the image digest to put back; empty: the previous image
	// Reason: freeze's reason; promote --break-glass's reason to merge
	// despite a freeze.
	Reason     string
	BreakGlass bool
	Line       string // the command line as written
	Err        string // why the command is not understood
}

const usage = "usage: `/lotse promote <stage> [--break-glass <reason>]`, `/lotse rollback <stage> [<digest>]`, `/lotse retry [<stage>]`, " +
	"`/lotse accept <stage>`, `/lotse freeze <stage|all> <reason>`, `/lotse unfreeze <stage|all>`"

// ParseCommand finds the first line of a note that starts with "/lotse" and
// reads it. ok is false when the note has no such line: the note is not for
// lotse. A line that is for lotse but not understood gives ok true and Err.
func ParseCommand(text string) (c ParsedCommand, ok bool) {
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "/lotse" {
			continue
		}
		c.Line = strings.Join(f, " ")
		args := f[1:]
		if len(args) == 0 {
			c.Err = "no command given"
			return c, true
		}
		c.Verb, args = args[0], args[1:]
		switch c.Verb {
		case VerbPromote:
			switch {
			case len(args) == 1:
				c.Stage = args[0]
			case len(args) >= 3 && args[1] == "--break-glass":
				c.Stage, c.BreakGlass, c.Reason = args[0], true, strings.Join(args[2:], " ")
			default:
				c.Err = "promote takes a stage, and --break-glass with a reason to merge despite a freeze"
			}
		case VerbAccept, VerbUnfreeze:
			if len(args) != 1 {
				c.Err = c.Verb + " takes one stage"
			} else {
				c.Stage = args[0]
			}
		case VerbFreeze:
			if len(args) < 2 {
				c.Err = "freeze takes a stage (or all) and a reason"
			} else {
				c.Stage, c.Reason = args[0], strings.Join(args[1:], " ")
			}
		case VerbRollback:
			if len(args) < 1 || len(args) > 2 {
				c.Err = "rollback takes a stage and an optional digest"
			} else {
				c.Stage = args[0]
				if len(args) == 2 {
					c.Digest = args[1]
				}
			}
		case VerbRetry:
			if len(args) > 1 {
				c.Err = "retry takes at most a stage"
			} else if len(args) == 1 {
				c.Stage = args[0]
			}
		default:
			c.Err = fmt.Sprintf("unknown command %q", c.Verb)
		}
		if c.Err != "" {
			c.Verb, c.Stage, c.Digest, c.Reason, c.BreakGlass = "", "", "", "", false
		}
		return c, true
	}
	return c, false
}

func (en *engine) command(e Command) {
	if e.User.ID == 0 || e.User.Is(en.p.Bot) {
		return // lotse's own notes quote commands; never answer them
	}
	c, ok := ParseCommand(e.Text)
	if !ok {
		return
	}
	if e.NoteID != 0 {
		if slices.Contains(en.s.Notes, e.NoteID) {
			return // re-delivered
		}
		en.s.Notes = append(en.s.Notes, e.NoteID)
		if n := len(en.s.Notes); n > maxNotes {
			en.s.Notes = slices.Clone(en.s.Notes[n-maxNotes:])
		}
		en.changed = true
	}
	reply := func(format string, args ...any) {
		en.emit(Reply{Project: e.Project, IID: e.IID, Body: e.User.String() + " " + fmt.Sprintf(format, inert(args)...)})
	}
	if !en.p.IsOperator(e.User) {
		en.audit(AuditDenied, e.Stage, "", e.User, "not an operator: "+oneLine(c.Line, 200))
		reply("you are not allowed to run lotse commands for %s; ask one of its operators.", en.p.App)
		return
	}
	if c.Err != "" {
		reply("%s; %s", c.Err, markdown(usage))
		return
	}
	stage := c.Stage
	if stage == "" {
		stage = e.Stage
	}
	if (c.Verb == VerbFreeze || c.Verb == VerbUnfreeze) && stage == "all" {
		en.audit(AuditCommand, "", "", e.User, oneLine(c.Line, 200))
		en.freeze(Freeze{Reason: c.Reason, By: e.User, Lift: c.Verb == VerbUnfreeze})
		reply("%s every stage of %s.", map[bool]string{true: "unfroze", false: "froze"}[c.Verb == VerbUnfreeze], en.p.App)
		return
	}
	ti := en.p.stageIndex(stage)
	if ti < 0 {
		if stage == "" {
			reply("name the stage (not on a lotse merge request); %s", markdown(usage))
		} else {
			reply("%s has no stage %q (stages: %s).", en.p.App, stage, strings.Join(stageNames(en.p), ", "))
		}
		return
	}
	en.audit(AuditCommand, stage, "", e.User, oneLine(c.Line, 200))
	switch c.Verb {
	case VerbPromote:
		if c.BreakGlass {
			en.cmdBreakGlass(ti, c.Reason, e.User, reply)
			return
		}
		en.cmdPromote(ti, e.User, reply)
	case VerbFreeze, VerbUnfreeze:
		en.freeze(Freeze{Stage: stage, Reason: c.Reason, By: e.User, Lift: c.Verb == VerbUnfreeze})
		reply("%s %s.", map[bool]string{true: "unfroze", false: "froze"}[c.Verb == VerbUnfreeze], stage)
	case VerbRollback:
		en.cmdRollback(ti, c.Digest, e.User, reply)
	case VerbRetry:
		en.cmdRetry(ti, e.User, reply)
	case VerbAccept:
		en.cmdAccept(ti, e.User, reply)
	}
}

func (en *engine) cmdPromote(ti int, user User, reply func(string, ...any)) {
	target := en.p.Stages[ti]
	if ti == 0 {
		reply("%s is the first stage: CI writes it.", target.Name)
		return
	}
	if target.Mode == ModeCommit {
		reply("%s is a commit stage: `lotse bump` in CI writes it, lotsed opens no merge request.", target.Name)
		return
	}
	from := en.p.Stages[ti-1].Name
	var prev *Deployment
	if st := en.s.Stage(from); st != nil {
		prev = st.Current
	}
	if prev == nil {
		reply("nothing runs in %s yet.", from)
		return
	}
	st := en.stage(target.Name)
	if st.Current != nil && st.Current.Image == prev.Image {
		reply("%s already runs %s.", target.Name, prev.Image)
		return
	}
	if pr := st.Promotion; pr != nil && pr.Image == prev.Image && !pr.Rollback && (!pr.Phase.IsTerminal() || pr.Phase == PhaseMerged) {
		reply("the promotion of %s to %s is already under way (%s).", prev.Image, target.Name, pr.Phase)
		return
	}
	en.audit(AuditPromoted, target.Name, prev.Image, user, "promotion asked by ChatOps")
	en.start(ti, *prev, from, user, false)
	reply("promoting %s from %s to %s.", prev.Image, from, target.Name)
}

func (en *engine) cmdRollback(ti int, digest string, user User, reply func(string, ...any)) {
	target := en.p.Stages[ti]
	st := en.s.Stage(target.Name)
	if st == nil || st.Current == nil {
		reply("nothing runs in %s: nothing to roll back.", target.Name)
		return
	}
	cur := st.Current
	if digest != "" && imageMatches(cur.Image, digest) {
		reply("%s already runs %s.", target.Name, cur.Image)
		return
	}
	var pick *Deployment
	for i := len(st.History) - 1; i >= 0; i-- {
		h := st.History[i]
		if h.Image == cur.Image {
			continue
		}
		if digest == "" || imageMatches(h.Image, digest) {
			pick = &h
			break
		}
	}
	if pick == nil {
		if digest == "" {
			reply("%s has no earlier image to roll back to.", target.Name)
		} else {
			reply("%s is not in the history of %s; pick one of: %s.", digest, target.Name, markdown(historyList(st.History, cur.Image)))
		}
		return
	}
	if pr := st.Promotion; pr != nil && pr.Rollback && pr.Image == pick.Image && (!pr.Phase.IsTerminal() || pr.Phase == PhaseMerged) {
		reply("the rollback of %s to %s is already under way (%s).", target.Name, pick.Image, pr.Phase)
		return
	}
	en.audit(AuditRollback, target.Name, pick.Image, user, "rollback from "+cur.Image)
	en.start(ti, *pick, "", user, true)
	reply("rolling %s back to %s.", target.Name, pick.Image)
}

// imageMatches reports whether image is the digest or ends in @digest.
func imageMatches(image, digest string) bool {
	return image == digest || strings.HasSuffix(image, "@"+digest)
}

func historyList(h []Deployment, current string) string {
	var out []string
	for i := len(h) - 1; i >= 0 && len(out) < 5; i-- {
		if h[i].Image != current && !slices.Contains(out, code(h[i].Image)) {
			out = append(out, code(h[i].Image))
		}
	}
	if len(out) == 0 {
		return "(no earlier image)"
	}
	return strings.Join(out, ", ")
}

func (en *engine) cmdRetry(ti int, user User, reply func(string, ...any)) {
	target := en.p.Stages[ti]
	pr := en.promotion(target.Name)
	if pr == nil {
		reply("no promotion into %s to retry.", target.Name)
		return
	}
	switch pr.Phase {
	case PhaseBlocked:
		en.audit(AuditRetry, target.Name, pr.Image, user, "retry after: "+pr.Reason)
		blockedIn := pr.BlockedIn
		pr.Reason, pr.BlockedIn = "", ""
		en.touch(target.Name)
		switch blockedIn {
		case PhaseChecking, PhaseWaiting, "":
			en.resetGates(ti, pr)
			en.check(ti, pr)
			reply("checking the gates of %s for %s again.", pr.Image, target.Name)
		default:
			pr.MergeAttempts = 0
			en.merge(ti, pr)
			if pr.Phase == PhaseBlocked || pr.MR == nil {
				// no MR to merge: start over at the gates
				en.resetGates(ti, pr)
				en.check(ti, pr)
			}
			reply("retrying the merge into %s.", target.Name)
		}
	case PhaseTampered:
		en.audit(AuditRetry, target.Name, pr.Image, user, "clean merge request after: "+pr.Reason)
		pr.Reason, pr.BlockedIn, pr.MR, pr.MergeAttempts = "", "", nil, 0
		en.touch(target.Name)
		en.resetGates(ti, pr)
		en.check(ti, pr)
		reply("opening a clean merge request for %s into %s once its gates pass again.", pr.Image, target.Name)
	case PhaseMerging:
		if !pr.RetryMerge {
			reply("the merge into %s was asked; waiting for GitLab.", target.Name)
			return
		}
		en.audit(AuditRetry, target.Name, pr.Image, user, "merge retried early")
		en.merge(ti, pr)
		reply("retrying the merge into %s.", target.Name)
	case PhaseChecking:
		reply("the gates of %s are being checked.", target.Name)
	case PhaseWaiting:
		en.wait(ti, pr)
		reply("%s", markdown(nextStep(en.p, target, pr, en.s, en.now)))
	case PhaseCancelled:
		reply("the merge request was closed; use `/lotse promote %s` to start again.", target.Name)
	default:
		reply("nothing to retry: the promotion of %s into %s is %s.", pr.Image, target.Name, pr.Phase)
	}
}

// cmdAccept adopts the stage's out-of-band change: it becomes what runs
// there and is promoted onward, approvals as usual. Its change's authors
// are not known, so approval stages read them first.
func (en *engine) cmdAccept(ti int, user User, reply func(string, ...any)) {
	target := en.p.Stages[ti]
	st := en.s.Stage(target.Name)
	if st == nil || st.OutOfBand == nil {
		reply("%s has no out-of-band change to accept.", target.Name)
		return
	}
	o := *st.OutOfBand
	if o.Image == "" {
		reply("the out-of-band change of %s (commit %s) names no image lotse can promote; revert it in Git instead.", target.Name, short(o.Commit))
		return
	}
	en.audit(AuditAccepted, target.Name, o.Image, user, "accepted commit "+short(o.Commit)+" by "+o.Pusher.String()+": "+o.Reason)
	en.land(target.Name, Deployment{Image: o.Image, SourceProject: o.SourceProject, SourceCommit: o.SourceCommit, Commit: o.Commit,
		LandedAt: en.now, AuthorsErr: "not read yet (an accepted out-of-band change)"},
		"out-of-band commit "+short(o.Commit)+" accepted by "+user.String(), user)
	reply("accepted the out-of-band change of %s: %s runs there now and is promoted onward.", target.Name, o.Image)
}

// cmdBreakGlass lets the promotion into the stage merge despite a freeze,
// for an operator's reason, recorded in the audit log. Approvals and gates
// still apply.
func (en *engine) cmdBreakGlass(ti int, reason string, user User, reply func(string, ...any)) {
	target := en.p.Stages[ti]
	pr := en.promotion(target.Name)
	if pr == nil || pr.Phase.IsTerminal() || pr.Phase == PhaseMerged {
		reply("no promotion into %s is under way; start one with /lotse promote %s.", target.Name, target.Name)
		return
	}
	pr.BreakGlass = reason
	en.touch(target.Name)
	en.audit(AuditBreakGlass, target.Name, pr.Image, user, "merge despite the freeze: "+reason)
	if pr.Phase == PhaseMerging && pr.RetryMerge {
		en.merge(ti, pr)
	}
	reply("break-glass for %s into %s: it merges despite the freeze once approvals and gates allow.", pr.Image, target.Name)
}
