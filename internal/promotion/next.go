package promotion

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

// ErrMalformed is wrapped by the errors Next returns for input it cannot
// process: an invalid policy, a state of another app, an unknown event type
// or an event missing what identifies it.
var ErrMalformed = errors.New("malformed promotion input")

// ErrUnknownStage is wrapped by the errors Next returns for an event naming a
// stage the policy does not have.
var ErrUnknownStage = errors.New("unknown stage")

// Next applies one event to the state of an app and returns the new state
// and the actions the service must carry out, in order. now is the time the
// event is processed; it drives soak timers and is stamped on audit records.
//
// Next never changes s and never panics. An event that changes nothing (a
// re-delivery, a stale result, a note without a command) returns s as it was
// and no actions. The error is non-nil only for malformed input (see
// ErrMalformed and ErrUnknownStage); the state is then returned unchanged.
func Next(p Policy, s State, e Event, now time.Time) (State, []Action, error) {
	if err := p.Validate(); err != nil {
		return s, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if s.App != "" && s.App != p.App {
		return s, nil, fmt.Errorf("%w: the state is of app %q, the policy of app %q", ErrMalformed, s.App, p.App)
	}
	if err := checkEvent(p, e); err != nil {
		return s, nil, err
	}
	en := &engine{p: p, s: s.clone(), now: now.UTC(), touched: map[string]bool{}}
	switch e := e.(type) {
	case Landed:
		en.landed(e)
	case OutOfBandChange:
		if !en.p.IsWriter(e.Pusher) { // lotse's own merges and its writers' commits are not out of band
			en.outOfBand(e, "", "", "")
		}
	case AuthorsRead:
		en.authorsRead(e)
	case MROpened:
		en.mrOpened(e)
	case MRUpdated:
		en.mrUpdated(e)
	case MRApproved:
		en.mrApproved(e)
	case MRUnapproved:
		en.mrUnapproved(e)
	case Freeze:
		en.freeze(e)
	case Approvals:
		if pr := en.mrPromotion(e.Stage, e.IID); pr != nil {
			for _, a := range slices.Clone(pr.MR.Approvers) {
				if !slices.ContainsFunc(e.Users, a.User.Is) {
					en.mrUnapproved(MRUnapproved{Stage: e.Stage, IID: e.IID, User: a.User})
				}
			}
		}
	case MRMerged:
		en.mrMerged(e)
	case MRClosed:
		en.mrClosed(e)
	case Command:
		en.command(e)
	case GatesChecked:
		en.gatesChecked(e)
	case Health:
		en.health(e)
	case MergeResult:
		en.mergeResult(e)
	case Tick:
		en.tick()
	}
	if !en.changed {
		return s, en.acts, nil
	}
	en.s.App = p.App
	en.s.Seq++
	en.comments()
	return en.s, en.acts, nil
}

// checkEvent refuses events Next cannot attribute.
func checkEvent(p Policy, e Event) error {
	stage := func(name string) error {
		if p.stageIndex(name) < 0 {
			return fmt.Errorf("%w %q for app %s (stages: %s)", ErrUnknownStage, name, p.App, strings.Join(stageNames(p), ", "))
		}
		return nil
	}
	mr := func(name string, iid int) error {
		if err := stage(name); err != nil {
			return err
		}
		if iid <= 0 {
			return fmt.Errorf("%w: merge request event for stage %s without an IID", ErrMalformed, name)
		}
		return nil
	}
	switch e := e.(type) {
	case nil:
		return fmt.Errorf("%w: nil event", ErrMalformed)
	case Landed:
		if err := stage(e.Stage); err != nil {
			return err
		}
		if e.Image == "" {
			return fmt.Errorf("%w: landing in stage %s without an image", ErrMalformed, e.Stage)
		}
	case MROpened:
		return mr(e.Stage, e.IID)
	case MRUpdated:
		return mr(e.Stage, e.IID)
	case MRApproved:
		if e.User.ID == 0 {
			return fmt.Errorf("%w: approval without a user", ErrMalformed)
		}
		return mr(e.Stage, e.IID)
	case MRUnapproved:
		if e.User.ID == 0 {
			return fmt.Errorf("%w: unapproval without a user", ErrMalformed)
		}
		return mr(e.Stage, e.IID)
	case MRMerged:
		return mr(e.Stage, e.IID)
	case MRClosed:
		return mr(e.Stage, e.IID)
	case Approvals:
		return mr(e.Stage, e.IID)
	case Freeze:
		if e.Stage != "" {
			return stage(e.Stage)
		}
	case Command:
		if e.Stage != "" {
			return stage(e.Stage)
		}
	case GatesChecked:
		if err := stage(e.Stage); err != nil {
			return err
		}
		if e.Image == "" {
			return fmt.Errorf("%w: gate results for stage %s without an image", ErrMalformed, e.Stage)
		}
	case Health:
		return stage(e.Stage)
	case OutOfBandChange:
		if err := stage(e.Stage); err != nil {
			return err
		}
		if e.Commit == "" {
			return fmt.Errorf("%w: out-of-band change of stage %s without a commit", ErrMalformed, e.Stage)
		}
	case AuthorsRead:
		return stage(e.Stage)
	case MergeResult:
		if err := mr(e.Stage, e.IID); err != nil {
			return err
		}
		switch e.Outcome {
		case MergeDone, MergeNotYet, MergeNotMergeable, MergeAlreadyMerged, MergeTampered, MergeWaitPipeline, MergePipelineFailed:
		default:
			return fmt.Errorf("%w: unknown merge outcome %q", ErrMalformed, e.Outcome)
		}
	case Tick:
	default:
		return fmt.Errorf("%w: unknown event type %T", ErrMalformed, e)
	}
	return nil
}

func stageNames(p Policy) []string {
	names := make([]string, len(p.Stages))
	for i, st := range p.Stages {
		names[i] = st.Name
	}
	return names
}

// engine is one run of Next: the working copy of the state and what the run
// did so far.
type engine struct {
	p       Policy
	s       State
	now     time.Time
	acts    []Action
	changed bool
	touched map[string]bool // stages whose GitOps MR comment needs an update
	sources []CommentTarget // source commits whose MR comment needs an update
}

// stage returns the state of the stage called name, creating it.
func (en *engine) stage(name string) *StageState {
	if en.s.Stages == nil {
		en.s.Stages = map[string]*StageState{}
	}
	st := en.s.Stages[name]
	if st == nil {
		st = &StageState{}
		en.s.Stages[name] = st
	}
	return st
}

// promotion returns the latest promotion into the stage, or nil.
func (en *engine) promotion(stage string) *Promotion {
	if st := en.s.Stage(stage); st != nil {
		return st.Promotion
	}
	return nil
}

// mrPromotion returns the promotion into the stage whose MR is iid, or nil.
func (en *engine) mrPromotion(stage string, iid int) *Promotion {
	pr := en.promotion(stage)
	if pr == nil || pr.MR == nil || pr.MR.IID != iid {
		return nil
	}
	return pr
}

func (en *engine) emit(a Action) { en.acts = append(en.acts, a) }

func (en *engine) audit(kind, stage, image string, actor User, detail string) {
	en.emit(Audit{App: en.p.App, Kind: kind, Stage: stage, Image: image, Actor: actor, Detail: detail, At: en.now})
}

// touch marks the comments of a stage's promotion and of its source commit
// for an update.
func (en *engine) touch(stage string) {
	en.changed = true
	en.touched[stage] = true
	if pr := en.promotion(stage); pr != nil {
		en.touchSource(pr.SourceProject, pr.SourceCommit)
	}
}

func (en *engine) touchSource(project, commit string) {
	if commit == "" {
		return
	}
	t := CommentTarget{SourceProject: project, SourceCommit: commit}
	if !slices.Contains(en.sources, t) {
		en.sources = append(en.sources, t)
	}
}

// comments upserts the sticky comments of everything touched, stages in
// promotion order, then source MRs in the order they were touched.
func (en *engine) comments() {
	for _, st := range en.p.Stages {
		if !en.touched[st.Name] {
			continue
		}
		if pr := en.promotion(st.Name); pr != nil && pr.MR != nil {
			en.emit(UpsertComment{
				Target: CommentTarget{Stage: st.Name, IID: pr.MR.IID},
				Body:   RenderComment(en.p, en.s, st.Name, en.now),
			})
		}
	}
	for _, t := range en.sources {
		en.emit(UpsertComment{Target: t, Body: RenderSourceComment(en.p, en.s, t.SourceProject, t.SourceCommit, en.now)})
	}
}

func (en *engine) setPhase(stage string, pr *Promotion, ph Phase) {
	if pr.Phase == ph {
		return
	}
	pr.Phase = ph
	pr.UpdatedAt = en.now
	en.touch(stage)
}

func (en *engine) setGate(g *Gate, status GateStatus, reason string) {
	if g.Status == status && g.Reason == reason {
		return
	}
	g.Status, g.Reason = status, reason
	en.changed = true
}

// status posts the commit status of a promotion on its source commit, once
// per state: GitLab refuses a transition to the state a status is in.
func (en *engine) status(stage string, pr *Promotion, state, desc string) {
	if pr.Status == state {
		return
	}
	pr.Status = state
	en.changed = true
	en.setStatus(pr.SourceProject, pr.SourceCommit, stage, state, desc)
}

func (en *engine) setStatus(project, commit, stage, state, desc string) {
	if commit == "" {
		return
	}
	en.emit(SetStatus{SourceProject: project, SourceCommit: commit, Name: "lotse/" + stage, State: state, Description: oneLine(desc, 140)})
}

// --- landing and health ---

// untrusted says why a commit with trailers is not a landing: it was pushed
// by someone who is neither lotse nor a writer, or its change is not what
// its trailers say. Empty: it is a landing.
func (en *engine) untrusted(e Landed) string {
	switch {
	case e.Mismatch != "":
		return "its trailers do not match its change: " + e.Mismatch
	case !en.p.IsWriter(e.Pusher):
		return "pushed by " + e.Pusher.String() + ", who is neither lotse nor one of its writers"
	}
	return ""
}

func (en *engine) landed(e Landed) {
	st := en.stage(e.Stage)
	at := e.At.UTC()
	if e.At.IsZero() {
		at = en.now
	}
	if cur := st.Current; cur != nil {
		if sameLanding(*cur, e, at) || at.Before(cur.LandedAt) {
			return // re-delivered, or an older landing after a newer one
		}
		for _, h := range st.History {
			if sameLanding(h, e, at) {
				return
			}
		}
	}
	if why := en.untrusted(e); why != "" {
		en.outOfBand(OutOfBandChange{Stage: e.Stage, Commit: e.Commit, Pusher: e.Pusher, Reason: why, At: at}, e.Image, e.SourceProject, e.SourceCommit)
		return
	}
	en.land(e.Stage, Deployment{
		Image:         e.Image,
		SourceProject: e.SourceProject,
		SourceCommit:  e.SourceCommit,
		ChangeAuthors: normUsers(e.ChangeAuthors),
		AuthorsErr:    e.AuthorsErr,
		Commit:        e.Commit,
		Head:          e.Head,
		LandedAt:      at,
	}, "GitOps commit "+short(e.Commit)+" reached the default branch", e.Pusher)
}

// land makes d what runs in the stage and starts its promotion onward.
func (en *engine) land(stage string, d Deployment, detail string, actor User) {
	ti := en.p.stageIndex(stage)
	st := en.stage(stage)
	pr := st.Promotion
	mine := pr != nil && pr.Image == d.Image && (!pr.Phase.IsTerminal() || pr.Phase == PhaseBlocked)
	if mine {
		if d.ChangeAuthors == nil && d.AuthorsErr == "" {
			d.ChangeAuthors, d.AuthorsErr = slices.Clone(pr.ChangeAuthors), pr.AuthorsErr
		}
		if d.SourceCommit == "" {
			d.SourceProject, d.SourceCommit = pr.SourceProject, pr.SourceCommit
		}
	}
	if st.Current != nil {
		st.History = append(st.History, *st.Current)
		if n := len(st.History); n > MaxHistory {
			st.History = slices.Clone(st.History[n-MaxHistory:])
		}
		en.replaced(stage, &st.History[len(st.History)-1], d, mine && pr.Rollback)
	}
	state, desc := StatusSuccess, "running in "+stage
	if en.p.Stages[ti].ManualSync {
		// Merged is not running: ArgoCD syncs this stage by hand.
		d.Sync, state, desc = SyncWaiting, StatusRunning, "merged; waiting for ArgoCD to sync "+stage
		detail += "; waiting for ArgoCD to sync it"
	}
	st.Current = &d
	en.deployed(stage, st.Current, mine && pr.Rollback)
	st.OutOfBand = nil
	en.touch(stage)
	en.touchSource(d.SourceProject, d.SourceCommit)
	en.audit(AuditLanded, stage, d.Image, actor, detail)
	if mine {
		pr.Reason = ""
		en.setPhase(stage, pr, PhaseLanded)
		en.status(stage, pr, state, desc)
		en.attestPromotion(stage)
	} else {
		en.setStatus(d.SourceProject, d.SourceCommit, stage, state, desc)
	}
	if mine && pr.Rollback {
		return // a rollback is not promoted further
	}
	if ti+1 < len(en.p.Stages) {
		en.autoPromote(ti+1, d)
	}
}

// outOfBand records a change of the stage that is not a landing. It is
// never promoted onward; an operator's `/lotse accept` adopts it.
func (en *engine) outOfBand(e OutOfBandChange, image, sourceProject, sourceCommit string) {
	st := en.stage(e.Stage)
	if (st.OutOfBand != nil && st.OutOfBand.Commit == e.Commit) || (st.Current != nil && st.Current.Commit == e.Commit) {
		return // re-delivered
	}
	at := e.At.UTC()
	if e.At.IsZero() {
		at = en.now
	}
	st.OutOfBand = &OutOfBand{Image: image, SourceProject: sourceProject, SourceCommit: sourceCommit, Commit: e.Commit, Pusher: e.Pusher, Reason: e.Reason, At: at}
	en.touch(e.Stage)
	en.audit(AuditOutOfBand, e.Stage, image, e.Pusher, "commit "+short(e.Commit)+": "+e.Reason+"; not promoted onward")
	en.setStatus(sourceProject, sourceCommit, e.Stage, StatusFailed, "out-of-band change of "+e.Stage+": "+e.Reason)
}

func sameLanding(d Deployment, e Landed, at time.Time) bool {
	if e.Commit != "" {
		return d.Commit == e.Commit
	}
	return d.Commit == "" && d.Image == e.Image && d.SourceCommit == e.SourceCommit && d.LandedAt.Equal(at)
}

// autoPromote starts the promotion into stage ti of what just landed in the
// stage before it, unless that stage is left to CI or already has it.
func (en *engine) autoPromote(ti int, d Deployment) {
	target := en.p.Stages[ti]
	if target.Mode == ModeCommit {
		return // lotse bump writes commit stages from CI
	}
	st := en.stage(target.Name)
	if st.Current != nil && st.Current.Image == d.Image {
		return
	}
	if pr := st.Promotion; pr != nil && pr.Image == d.Image && !pr.Rollback &&
		(!pr.Phase.IsTerminal() || pr.Phase == PhaseMerged || pr.Phase == PhaseLanded) {
		return
	}
	en.start(ti, d, en.p.Stages[ti-1].Name, User{}, false)
}

func (en *engine) health(e Health) {
	st := en.s.Stage(e.Stage)
	if st == nil || st.Current == nil {
		return
	}
	at := e.At.UTC()
	if e.At.IsZero() {
		at = en.now
	}
	cur := st.Current
	if !aboutVersion(e, *cur, at) {
		return // about the version before, or another one
	}
	h := cur.Health
	if h != nil && h.Healthy == e.Healthy && h.Reason == e.Reason {
		return
	}
	nh := HealthStatus{Healthy: e.Healthy, Reason: e.Reason, At: at}
	if h != nil && h.Healthy == e.Healthy {
		nh.At = h.At // healthy (or not) since the first report
	}
	cur.Health = &nh
	en.touch(e.Stage)
	en.audit(AuditHealth, e.Stage, cur.Image, User{}, healthWord(e.Healthy)+reasonSuffix(e.Reason))
	en.synced(e, cur)
	en.deployHealth(e, cur, at)
	ti := en.p.stageIndex(e.Stage)
	if ti+1 < len(en.p.Stages) {
		next := en.p.Stages[ti+1].Name
		if pr := en.promotion(next); pr != nil && pr.Phase == PhaseWaiting && pr.From == e.Stage {
			en.touch(next)
			en.wait(ti+1, pr)
		}
	}
}

// synced moves a version in a manual-sync stage to running when ArgoCD
// reports it Synced and Healthy, or to degraded when it reports Degraded;
// the commit status says so.
func (en *engine) synced(e Health, d *Deployment) {
	next := ""
	switch {
	case d.Sync == "":
		return
	case e.Healthy:
		next = SyncRunning
	case e.Degraded:
		next = SyncDegraded
	}
	if next == "" || next == d.Sync {
		return
	}
	d.Sync = next
	pr := en.promotion(e.Stage)
	if pr != nil && pr.Image != d.Image {
		pr = nil
	}
	state, desc, kind := StatusSuccess, "running in "+e.Stage, AuditRunning
	if next == SyncDegraded {
		state, desc, kind = StatusFailed, "degraded in "+e.Stage+reasonSuffix(e.Reason), AuditDegraded
	}
	en.audit(kind, e.Stage, d.Image, User{}, "ArgoCD: "+next+reasonSuffix(e.Reason))
	if pr != nil {
		en.status(e.Stage, pr, state, desc)
	} else {
		en.setStatus(d.SourceProject, d.SourceCommit, e.Stage, state, desc)
	}
}

// aboutVersion reports whether a health report is about the deployment d:
// its images contain d's digest, or its revision is the commit that landed
// d or the head that landing left; a report that names neither counts when
// it came after the landing.
func aboutVersion(e Health, d Deployment, at time.Time) bool {
	switch {
	case len(e.Images) > 0:
		_, digest, ok := strings.Cut(d.Image, "@")
		return ok && slices.ContainsFunc(e.Images, func(img string) bool { return strings.HasSuffix(img, "@"+digest) || img == digest })
	case e.Revision != "":
		return e.Revision == d.Commit || (d.Head != "" && e.Revision == d.Head)
	}
	return !at.Before(d.LandedAt)
}

func healthWord(ok bool) string {
	if ok {
		return "healthy"
	}
	return "unhealthy"
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

// --- promotions and gates ---

// start begins a promotion of d's image into stage ti, superseding a
// promotion still on its way there. from is the stage the image comes from
// (empty for a rollback); trigger the operator who asked, if any.
func (en *engine) start(ti int, d Deployment, from string, trigger User, rollback bool) *Promotion {
	target := en.p.Stages[ti]
	st := en.stage(target.Name)
	if old := st.Promotion; old != nil {
		if !old.Phase.replaceable() {
			old.Reason = "superseded by " + d.Image
			old.RetryMerge = false
			en.setPhase(target.Name, old, PhaseSuperseded)
			en.status(target.Name, old, StatusCanceled, "superseded by a newer version")
			en.audit(AuditSuperseded, target.Name, old.Image, trigger, "superseded by "+d.Image)
			if old.MR != nil {
				// Approvals belong to one version: the new one gets a
				// fresh merge request.
				en.emit(CloseMR{Stage: target.Name, IID: old.MR.IID, Comment: "Superseded by " + code(d.Image) +
					": lotse opens a new merge request for it. Approvals given here do not carry over."})
			}
		}
	}
	en.s.LastID++
	pr := &Promotion{
		ID:            en.s.LastID,
		Image:         d.Image,
		From:          from,
		SourceProject: d.SourceProject,
		SourceCommit:  d.SourceCommit,
		ChangeAuthors: slices.Clone(d.ChangeAuthors),
		AuthorsErr:    d.AuthorsErr,
		Rollback:      rollback,
		Trigger:       trigger,
		StartedAt:     en.now,
		UpdatedAt:     en.now,
	}
	if st.Promotion != nil {
		st.Previous = st.Promotion
	}
	st.Promotion = pr
	en.touch(target.Name)
	if rollback {
		pr.Gates = Gates{
			Signature: skipped(target.RequireSignature),
			Scan:      skipped(target.MaxSeverity != nil),
			Soak:      skipped(target.Soak > 0),
			Health:    skipped(target.RequireHealthy),
		}
		pr.Phase = PhaseOpening
		en.audit(AuditStarted, target.Name, d.Image, trigger, "rollback of "+target.Name+" to "+d.Image+"; gates skipped")
		en.emit(Rollback{Stage: target.Name, Image: d.Image, SourceProject: d.SourceProject, SourceCommit: d.SourceCommit})
		en.status(target.Name, pr, StatusRunning, "rolling back")
		return pr
	}
	en.audit(AuditStarted, target.Name, d.Image, trigger, "promotion from "+from+" to "+target.Name)
	en.resetGates(ti, pr)
	en.check(ti, pr)
	return pr
}

func skipped(required bool) Gate {
	if !required {
		return Gate{}
	}
	return Gate{Status: GateSkipped, Reason: "skipped: rollback"}
}

// resetGates marks every gate the stage requires as pending.
func (en *engine) resetGates(ti int, pr *Promotion) {
	target := en.p.Stages[ti]
	pending := func(required bool) Gate {
		if required {
			return Gate{Status: GatePending}
		}
		return Gate{}
	}
	g := Gates{
		Signature: pending(target.RequireSignature),
		Scan:      pending(target.MaxSeverity != nil),
		Soak:      pending(target.Soak > 0),
		Health:    pending(target.RequireHealthy),
	}
	if pr.Gates != g {
		pr.Gates = g
		en.changed = true
	}
}

// check asks the service for the gates it must check, or goes straight on to
// the gates the engine decides itself.
func (en *engine) check(ti int, pr *Promotion) {
	target := en.p.Stages[ti]
	if target.needsCheck() {
		en.setPhase(target.Name, pr, PhaseChecking)
		en.emit(CheckGates{Stage: target.Name, Image: pr.Image, Signature: target.RequireSignature, Scan: target.MaxSeverity != nil})
		en.status(target.Name, pr, StatusPending, "checking gates")
		return
	}
	en.setPhase(target.Name, pr, PhaseWaiting)
	en.status(target.Name, pr, StatusPending, "waiting for gates")
	en.wait(ti, pr)
}

func (en *engine) gatesChecked(e GatesChecked) {
	ti := en.p.stageIndex(e.Stage)
	pr := en.promotion(e.Stage)
	if pr == nil || pr.Phase != PhaseChecking || pr.Image != e.Image {
		return // a duplicate or a result for an image no longer promoted
	}
	target := en.p.Stages[ti]
	var failed []string
	judge := func(g *Gate, required bool, r Result, name, okReason, failReason string) {
		if !required {
			return
		}
		switch {
		case !r.Checked:
			en.setGate(g, GateFailed, "not checked"+reasonSuffix(r.Reason))
		case !r.OK:
			en.setGate(g, GateFailed, orDefault(r.Reason, failReason))
		default:
			en.setGate(g, GatePassed, orDefault(r.Reason, okReason))
			return
		}
		failed = append(failed, name+": "+g.Reason)
	}
	judge(&pr.Gates.Signature, target.RequireSignature, e.Signature, "signature", "signature verified", "signature does not verify")
	if target.MaxSeverity != nil {
		judge(&pr.Gates.Scan, true, judgeScan(e.Scan, *target.MaxSeverity, target.MaxScanAge, en.now), "scan", "", "")
	}
	en.touch(e.Stage)
	if len(failed) > 0 {
		en.block(e.Stage, pr, strings.Join(failed, "; "))
		return
	}
	en.audit(AuditGatesPassed, e.Stage, pr.Image, User{}, gateSummary(pr.Gates))
	en.setPhase(e.Stage, pr, PhaseWaiting)
	en.wait(ti, pr)
}

// judgeScan compares the attested findings with the stage's maximum, and
// the scan's age with the stage's maxAge (see scanage.go).
func judgeScan(f ScanFacts, max vuln.Severity, maxAge time.Duration, now time.Time) Result {
	age, stale := scanAge(f.ScannedAt, maxAge, now)
	switch {
	case !f.Checked:
		return Result{Reason: f.Reason}
	case f.Findings > 0 && f.Highest >= max:
		return Result{Checked: true, Reason: fmt.Sprintf("scan attestation: %d finding(s), highest %s, at or above the stage's maximum %s", f.Findings, f.Highest, max) + ageSuffix(age)}
	case stale:
		return Result{Checked: true, Reason: age}
	}
	return Result{Checked: true, OK: true, Reason: fmt.Sprintf("scan attestation: %d finding(s), none at or above %s", f.Findings, max) + ageSuffix(age)}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func gateSummary(g Gates) string {
	var parts []string
	for _, x := range []struct {
		name string
		g    Gate
	}{{"signature", g.Signature}, {"scan", g.Scan}, {"soak", g.Soak}, {"health", g.Health}} {
		if x.g.Status != GateNotRequired {
			parts = append(parts, x.name+" "+string(x.g.Status)+reasonSuffix(x.g.Reason))
		}
	}
	if len(parts) == 0 {
		return "no gates"
	}
	return strings.Join(parts, "; ")
}

// wait evaluates the soak and health gates of a waiting promotion and opens
// its MR once they pass.
func (en *engine) wait(ti int, pr *Promotion) {
	if pr.Phase != PhaseWaiting {
		return
	}
	target := en.p.Stages[ti]
	var prev *Deployment
	if st := en.s.Stage(pr.From); st != nil {
		prev = st.Current
	}
	if prev == nil || prev.Image != pr.Image {
		en.block(target.Name, pr, pr.Image+" no longer runs in "+pr.From)
		return
	}
	ready := true
	if target.Soak > 0 {
		if en.now.Sub(prev.LandedAt) >= target.Soak {
			en.setGate(&pr.Gates.Soak, GatePassed, "soaked "+fmtDur(target.Soak)+" in "+pr.From)
		} else {
			en.setGate(&pr.Gates.Soak, GatePending, "")
			ready = false
		}
	}
	if target.RequireHealthy {
		switch h := prev.Health; {
		case h == nil:
			en.setGate(&pr.Gates.Health, GatePending, "")
			ready = false
		case !h.Healthy:
			en.setGate(&pr.Gates.Health, GateFailed, pr.From+" reported unhealthy"+reasonSuffix(h.Reason))
			en.touch(target.Name)
			en.block(target.Name, pr, "health: "+pr.Gates.Health.Reason)
			return
		default:
			en.setGate(&pr.Gates.Health, GatePassed, pr.From+" healthy"+reasonSuffix(h.Reason))
		}
	}
	if !ready {
		return
	}
	if target.Soak > 0 || target.RequireHealthy {
		en.touch(target.Name)
	}
	en.open(ti, pr)
}

// open asks for the MR of a promotion whose gates passed.
func (en *engine) open(ti int, pr *Promotion) {
	target := en.p.Stages[ti]
	if !pr.Gates.Passed() {
		return
	}
	en.setPhase(target.Name, pr, PhaseOpening)
	en.emit(OpenMR{Stage: target.Name, Image: pr.Image, SourceProject: pr.SourceProject, SourceCommit: pr.SourceCommit})
	en.status(target.Name, pr, StatusRunning, "opening the merge request")
}

// block stops a promotion with a reason; `/lotse retry` resumes it.
func (en *engine) block(stage string, pr *Promotion, reason string) {
	if pr.Phase == PhaseBlocked {
		return
	}
	pr.BlockedIn = pr.Phase
	pr.Reason = reason
	pr.RetryMerge = false
	en.setPhase(stage, pr, PhaseBlocked)
	en.status(stage, pr, StatusFailed, reason)
	en.audit(AuditBlocked, stage, pr.Image, User{}, reason)
}

// tamper stops a promotion whose MR is not what lotse wrote: it is closed
// unmerged and the promotion waits for an operator's `/lotse retry`.
func (en *engine) tamper(stage string, pr *Promotion, reason string, who User) {
	if pr.Phase == PhaseTampered {
		return
	}
	pr.BlockedIn = pr.Phase
	pr.Reason = reason
	pr.RetryMerge = false
	en.setPhase(stage, pr, PhaseTampered)
	if pr.MR != nil {
		en.emit(CloseMR{Stage: stage, IID: pr.MR.IID, Comment: "**lotse closed this merge request unmerged:** " + cell(reason) +
			".\n\nlotse merges only its own commit, as it wrote it. An operator can open a clean merge request with `/lotse retry`. " +
			"Protect the `lotse/*` branches (*Allowed to push and merge: Maintainers*) so that only lotse's user can push to them."})
	}
	en.status(stage, pr, StatusFailed, "tampered: "+reason)
	en.audit(AuditTampered, stage, pr.Image, who, reason)
}

// --- merge requests ---

func (en *engine) mrOpened(e MROpened) {
	ti := en.p.stageIndex(e.Stage)
	pr := en.promotion(e.Stage)
	if pr == nil || pr.Phase != PhaseOpening || pr.MR != nil {
		return // a duplicate, or an MR the engine did not ask for
	}
	if e.Image != "" && e.Image != pr.Image {
		return // the MR of an earlier image
	}
	if !e.Author.Is(en.p.Bot) {
		return // only merge requests lotse opened itself are lotse's
	}
	pr.MR = &MergeRequest{IID: e.IID, Author: e.Author, SHA: e.SHA, OpenedAt: en.now}
	for _, a := range e.Approvals {
		if a.At.IsZero() {
			a.At = en.now
		}
		pr.MR.Approvers = withApproval(pr.MR.Approvers, a)
	}
	en.touch(e.Stage)
	for _, c := range e.Closed {
		en.audit(AuditTampered, e.Stage, pr.Image, User{}, "closed "+c+" found on lotse's branch lotse/"+en.p.App+"/"+e.Stage)
	}
	en.audit(AuditMROpened, e.Stage, pr.Image, e.Author, fmt.Sprintf("merge request !%d", e.IID))
	if en.p.Stages[ti].Mode == ModeApproval {
		en.setPhase(e.Stage, pr, PhaseAwaitingApproval)
		en.status(e.Stage, pr, StatusRunning, "waiting for approvals")
	}
	en.merge(ti, pr)
}

// merge asks GitLab to merge the promotion's MR if the four-eyes rule (on
// approval stages) and the gates allow it; otherwise the promotion waits for
// approvals.
func (en *engine) merge(ti int, pr *Promotion) {
	target := en.p.Stages[ti]
	if pr.MR == nil || !pr.Gates.Passed() {
		return
	}
	detail := "merge request !" + fmt.Sprint(pr.MR.IID)
	if target.Mode == ModeApproval {
		counted, _ := fourEyes(en.p, target, pr)
		if len(counted) < target.Approvals {
			pr.RetryMerge = false
			en.setPhase(target.Name, pr, PhaseAwaitingApproval)
			return
		}
		detail += "; approved by " + userList(counted)
	}
	if why := en.frozen(target.Name); why != "" && pr.BreakGlass == "" {
		// Approved and gated, but the stage is frozen: the next tick after
		// the freeze merges it, or an operator breaks glass.
		en.setPhase(target.Name, pr, PhaseMerging)
		if !pr.RetryMerge {
			pr.RetryMerge = true
			en.changed = true
		}
		if pr.Reason != why {
			pr.Reason = why
			en.touch(target.Name)
			en.audit(AuditFrozen, target.Name, pr.Image, User{}, "merge held: "+why)
		}
		return
	}
	if pr.Phase == PhaseMerging && strings.HasPrefix(pr.Reason, "frozen") {
		pr.Reason = ""
	}
	en.setPhase(target.Name, pr, PhaseMerging)
	pr.RetryMerge = false
	pr.MergeAttempts++
	pr.UpdatedAt = en.now
	en.changed = true
	en.emit(MergeMR{Stage: target.Name, IID: pr.MR.IID, SHA: pr.MR.SHA, Attempt: pr.MergeAttempts, Pipeline: target.RequirePipeline})
	if pr.MergeAttempts == 1 {
		en.audit(AuditMergeAsked, target.Name, pr.Image, User{}, detail)
	}
	en.status(target.Name, pr, StatusRunning, "merging")
}

// Rejection says why an approval does not count.
type Rejection struct {
	User   User
	Reason string
}

// fourEyes splits the approvers of a promotion's MR into those who count and
// those who do not, with the reason, both in the order of the approvers.
func fourEyes(p Policy, target StagePolicy, pr *Promotion) (counted []User, rejected []Rejection) {
	if pr.MR == nil {
		return nil, nil
	}
	for _, a := range pr.MR.Approvers {
		if why := approvalRejected(p, pr, a); why != "" {
			rejected = append(rejected, Rejection{User: a.User, Reason: why})
		} else {
			counted = append(counted, a.User)
		}
	}
	return counted, rejected
}

// approvalRejected says why an approval does not count; empty when it
// does. People are compared by user ID.
func approvalRejected(p Policy, pr *Promotion, a Approval) string {
	u := a.User
	switch {
	case u.Is(p.Bot):
		return "lotse's own user"
	case pr.MR != nil && u.Is(pr.MR.Author):
		return "author of the merge request"
	case slices.ContainsFunc(pr.ChangeAuthors, u.Is):
		return "author or committer of the change"
	case u.Is(pr.Trigger):
		return "asked for it by ChatOps"
	case u.ID == 0:
		return "recorded by name before lotse compared people by GitLab user ID; approve again"
	case authorsUnknown(pr):
		return "the change's authors are unknown (" + orDefault(pr.AuthorsErr, "recorded by name only") + "), so nobody's approval counts yet"
	case pr.MR != nil && a.SHA != pr.MR.SHA:
		if a.SHA == "" {
			return "given before lotse's commit " + short(pr.MR.SHA) + " could be told apart"
		}
		return "given on commit " + short(a.SHA) + ", not on lotse's commit " + short(pr.MR.SHA)
	}
	return ""
}

// authorsUnknown reports whether the change's authors must be read (again)
// before an approval can count: reading them failed, or they were stored by
// name by an older lotse.
func authorsUnknown(pr *Promotion) bool {
	return pr.AuthorsErr != "" || slices.ContainsFunc(pr.ChangeAuthors, func(u User) bool { return u.ID == 0 })
}

// withApproval returns as with a in place of an earlier approval of the
// same user, sorted by user ID.
func withApproval(as []Approval, a Approval) []Approval {
	out := slices.DeleteFunc(slices.Clone(as), func(x Approval) bool { return x.User.Is(a.User) })
	out = append(out, a)
	slices.SortFunc(out, func(x, y Approval) int { return int(x.User.ID - y.User.ID) })
	return out
}

func hasApproval(as []Approval, u User) bool {
	return slices.ContainsFunc(as, func(a Approval) bool { return a.User.Is(u) })
}

func userList(us []User) string {
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = u.String()
	}
	return strings.Join(names, ", ")
}

// ValidApprovers returns the approvers of the stage's current promotion who
// count for the four-eyes rule, sorted.
func ValidApprovers(p Policy, s State, stage string) []User {
	ti := p.stageIndex(stage)
	st := s.Stage(stage)
	if ti < 0 || st == nil || st.Promotion == nil {
		return nil
	}
	counted, _ := fourEyes(p, p.Stages[ti], st.Promotion)
	return counted
}

func (en *engine) mrUpdated(e MRUpdated) {
	pr := en.mrPromotion(e.Stage, e.IID)
	if pr == nil || e.SHA == "" || e.SHA == pr.MR.SHA || pr.Phase == PhaseMerged || (pr.Phase.IsTerminal() && pr.Phase != PhaseBlocked) {
		return
	}
	// Someone pushed onto lotse's merge request: what would be merged is
	// not what lotse wrote, nor what was approved.
	en.tamper(e.Stage, pr, fmt.Sprintf("%s pushed commit %s onto lotse's commit %s in !%d", e.Pusher, short(e.SHA), short(pr.MR.SHA), e.IID), e.Pusher)
}

func (en *engine) mrApproved(e MRApproved) {
	ti := en.p.stageIndex(e.Stage)
	pr := en.mrPromotion(e.Stage, e.IID)
	a := Approval{User: e.User, SHA: e.SHA, At: en.now}
	if pr == nil || slices.ContainsFunc(pr.MR.Approvers, func(b Approval) bool { return sameApproval(a, b) }) {
		return
	}
	pr.MR.Approvers = withApproval(pr.MR.Approvers, a)
	en.touch(e.Stage)
	detail := "counts"
	if why := approvalRejected(en.p, pr, a); why != "" {
		detail = "does not count: " + why
	}
	en.audit(AuditApproved, e.Stage, pr.Image, e.User, fmt.Sprintf("approved merge request !%d; %s", e.IID, detail))
	if pr.Phase == PhaseAwaitingApproval {
		en.merge(ti, pr)
	}
}

func (en *engine) mrUnapproved(e MRUnapproved) {
	ti := en.p.stageIndex(e.Stage)
	pr := en.mrPromotion(e.Stage, e.IID)
	if pr == nil || !hasApproval(pr.MR.Approvers, e.User) {
		return
	}
	pr.MR.Approvers = slices.DeleteFunc(slices.Clone(pr.MR.Approvers), func(a Approval) bool { return a.User.Is(e.User) })
	if len(pr.MR.Approvers) == 0 {
		pr.MR.Approvers = nil
	}
	en.touch(e.Stage)
	en.audit(AuditUnapproved, e.Stage, pr.Image, e.User, fmt.Sprintf("revoked the approval of merge request !%d", e.IID))
	if pr.Phase == PhaseMerging && en.p.Stages[ti].Mode == ModeApproval {
		counted, _ := fourEyes(en.p, en.p.Stages[ti], pr)
		if len(counted) < en.p.Stages[ti].Approvals {
			en.audit(AuditMergeDeferred, e.Stage, pr.Image, e.User, "not enough approvals left; no further merge attempt")
			en.merge(ti, pr)
		}
	}
}

func (en *engine) mergeResult(e MergeResult) {
	pr := en.mrPromotion(e.Stage, e.IID)
	if pr == nil || (e.Attempt != 0 && e.Attempt != pr.MergeAttempts) {
		return // not ours, or the answer to an earlier attempt
	}
	switch e.Outcome {
	case MergeDone, MergeAlreadyMerged:
		if pr.Phase != PhaseMerging && pr.Phase != PhaseAwaitingApproval && pr.Phase != PhaseBlocked {
			return
		}
		pr.RetryMerge = false
		pr.Reason = ""
		pr.MR.MergedAt, pr.MR.MergedBy = en.now, User{}
		if e.Outcome == MergeDone {
			pr.MR.MergedBy = en.p.Bot
		}
		en.setPhase(e.Stage, pr, PhaseMerged)
		en.audit(AuditMerged, e.Stage, pr.Image, en.p.Bot, fmt.Sprintf("merge request !%d %s", e.IID, mergedWord(e.Outcome)))
	case MergeNotYet:
		if pr.Phase != PhaseMerging || pr.RetryMerge {
			return
		}
		if pr.MergeAttempts >= en.p.mergeAttempts() {
			en.block(e.Stage, pr, fmt.Sprintf("GitLab still computes the mergeability of !%d after %d attempts", e.IID, pr.MergeAttempts))
			return
		}
		pr.RetryMerge = true
		en.changed = true
	case MergeNotMergeable:
		if pr.Phase != PhaseMerging {
			return
		}
		en.block(e.Stage, pr, fmt.Sprintf("GitLab cannot merge !%d%s", e.IID, reasonSuffix(e.Reason)))
	case MergeTampered:
		if pr.Phase != PhaseMerging {
			return
		}
		en.tamper(e.Stage, pr, e.Reason, User{})
	case MergeWaitPipeline:
		if pr.Phase != PhaseMerging || pr.RetryMerge {
			return
		}
		pr.RetryMerge = true // no bound: a pipeline takes as long as it takes
		if pr.Reason != e.Reason {
			pr.Reason = e.Reason
			en.touch(e.Stage)
		}
		en.changed = true
	case MergePipelineFailed:
		if pr.Phase != PhaseMerging {
			return
		}
		en.block(e.Stage, pr, e.Reason)
	}
}

func mergedWord(o MergeOutcome) string {
	if o == MergeAlreadyMerged {
		return "was already merged"
	}
	return "merged"
}

func (en *engine) mrMerged(e MRMerged) {
	ti := en.p.stageIndex(e.Stage)
	pr := en.mrPromotion(e.Stage, e.IID)
	if pr == nil || (pr.Phase.IsTerminal() && pr.Phase != PhaseBlocked) || pr.Phase == PhaseMerged {
		return
	}
	pr.RetryMerge = false
	pr.Reason = ""
	pr.MR.MergedAt, pr.MR.MergedBy = en.now, e.By
	en.setPhase(e.Stage, pr, PhaseMerged)
	detail := fmt.Sprintf("merge request !%d merged", e.IID)
	target := en.p.Stages[ti]
	if e.By.ID != 0 && !e.By.Is(en.p.Bot) {
		detail += " by " + e.By.String() + ", not by lotse"
		if target.Mode == ModeApproval {
			if counted, _ := fourEyes(en.p, target, pr); len(counted) < target.Approvals {
				detail += fmt.Sprintf(", WITHOUT four-eyes (%d of %d valid approvals)", len(counted), target.Approvals)
			}
		}
	}
	en.audit(AuditMerged, e.Stage, pr.Image, e.By, detail)
}

func (en *engine) mrClosed(e MRClosed) {
	pr := en.mrPromotion(e.Stage, e.IID)
	if pr == nil || pr.Phase == PhaseMerged || (pr.Phase.IsTerminal() && pr.Phase != PhaseBlocked) {
		return
	}
	pr.RetryMerge = false
	pr.Reason = fmt.Sprintf("merge request !%d was closed", e.IID)
	en.setPhase(e.Stage, pr, PhaseCancelled)
	en.status(e.Stage, pr, StatusCanceled, pr.Reason)
	en.audit(AuditCancelled, e.Stage, pr.Image, User{}, pr.Reason)
}

// --- time ---

func (en *engine) tick() {
	for ti, target := range en.p.Stages {
		pr := en.promotion(target.Name)
		if pr == nil {
			continue
		}
		switch {
		case pr.Phase == PhaseWaiting:
			en.wait(ti, pr)
		case pr.Phase == PhaseMerging && pr.RetryMerge:
			en.merge(ti, pr)
		case pr.Phase == PhaseAwaitingApproval && authorsUnknown(pr):
			// Fail closed: nobody's approval counts while the change's
			// authors are unknown; read them again.
			en.emit(ReadAuthors{Stage: target.Name, Image: pr.Image, SourceProject: pr.SourceProject, SourceCommit: pr.SourceCommit})
		}
		if pr.MR != nil && (pr.Phase == PhaseAwaitingApproval || pr.Phase == PhaseMerging || pr.Phase == PhaseMerged) {
			en.emit(Reconcile{Stage: target.Name, IID: pr.MR.IID})
		}
	}
}

// frozen says why the stage is frozen now: a stop-the-line freeze an
// operator set, or a freeze window of lotse.yaml; empty when it is not.
func (en *engine) frozen(stage string) string {
	for _, k := range []string{stage, ""} {
		if f := en.s.Frozen[k]; f != nil {
			return fmt.Sprintf("frozen by %s since %s: %s (an operator lifts it with /lotse unfreeze %s)", f.By, f.At.Format("2006-01-02 15:04 UTC"), f.Reason, orDefault(k, "all"))
		}
	}
	for _, w := range en.p.Freezes {
		if (len(w.Stages) == 0 || slices.Contains(w.Stages, stage)) && !en.now.Before(w.From) && en.now.Before(w.Until) {
			return fmt.Sprintf("frozen until %s: %s", w.Until.UTC().Format("2006-01-02 15:04 UTC"), w.Reason)
		}
	}
	return ""
}

// freeze sets or lifts a stop-the-line freeze; promotions held by it merge
// on the next tick.
func (en *engine) freeze(e Freeze) {
	cur := en.s.Frozen[e.Stage]
	where := orDefault(e.Stage, "every stage")
	switch {
	case e.Lift && cur != nil:
		delete(en.s.Frozen, e.Stage)
		en.audit(AuditUnfrozen, e.Stage, "", e.By, "lifted the freeze of "+where+": "+cur.Reason)
	case !e.Lift && (cur == nil || cur.Reason != e.Reason):
		if en.s.Frozen == nil {
			en.s.Frozen = map[string]*StopTheLine{}
		}
		en.s.Frozen[e.Stage] = &StopTheLine{Reason: e.Reason, By: e.By, At: en.now}
		en.audit(AuditFrozen, e.Stage, "", e.By, "froze "+where+": "+e.Reason)
	default:
		return
	}
	en.changed = true
	for _, st := range en.p.Stages {
		if e.Stage == "" || st.Name == e.Stage {
			en.touch(st.Name)
		}
	}
}

// authorsRead takes the change's authors read again for a promotion that
// waited for them.
func (en *engine) authorsRead(e AuthorsRead) {
	ti := en.p.stageIndex(e.Stage)
	pr := en.promotion(e.Stage)
	if pr == nil || pr.Image != e.Image || !authorsUnknown(pr) {
		return
	}
	if e.Err != "" {
		if pr.AuthorsErr != e.Err {
			pr.AuthorsErr = e.Err
			en.touch(e.Stage)
		}
		return
	}
	pr.ChangeAuthors, pr.AuthorsErr = normUsers(e.Authors), ""
	en.touch(e.Stage)
	if pr.Phase == PhaseAwaitingApproval {
		en.merge(ti, pr)
	}
}

// --- helpers ---

func short(sha string) string {
	if len(sha) > 8 {
		return sha[:8]
	}
	return sha
}

// oneLine makes s one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// fmtDur writes a duration the way the comment shows it: 45s, 12m, 1h 5m,
// 2d 3h.
func fmtDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh %dm", h, m)
	default:
		days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd %dh", days, h)
	}
}
