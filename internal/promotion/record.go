package promotion

import (
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RecordPredicateType is the in-toto predicate type of a promotion record.
const RecordPredicateType = "https://lotse.dev/promotion/v1"

// RecordSchema is the JSON Schema (draft 2020-12) of a promotion record,
// the predicate of RecordPredicateType.
//
//go:embed promotion-record.schema.json
var RecordSchema []byte

// Record is the evidence of one promotion into an approval stage: what was
// promoted where, which gates it passed, who approved (and whose approval
// did not count, and why), where the change came from and when each step
// happened. The engine builds it from its State when the promotion lands
// (BuildRecord); the service adds what it verified itself (WithFacts) and
// signs it as an in-toto attestation of the image.
type Record struct {
	App         string `json:"app"`
	Stage       string `json:"stage"`
	PromotionID uint64 `json:"promotionID"`
	Image       string `json:"image"`  // the reference promoted, REPOSITORY@sha256:...
	Digest      string `json:"digest"` // sha256:...
	// Rollback: an earlier image was put back (the gates were skipped).
	Rollback bool `json:"rollback,omitempty"`
	// BreakGlass is the operator's reason to merge despite a freeze.
	BreakGlass   string          `json:"breakGlass,omitempty"`
	Trigger      *RecordUser     `json:"trigger,omitempty"` // the operator who asked for it; absent: automatic
	From         string          `json:"from,omitempty"`    // the stage it was promoted from
	Source       RecordSource    `json:"source"`
	Gates        []RecordGate    `json:"gates"`
	Approvals    RecordApprovals `json:"approvals"`
	MergeRequest RecordMR        `json:"mergeRequest"`
	Times        RecordTimes     `json:"times"`
	// Verification is what lotsed verified when it wrote the record; absent
	// in the record the engine builds.
	Verification *RecordVerification `json:"verification,omitempty"`
}

// RecordUser is a GitLab user: ID (which its owner cannot change) and
// username.
type RecordUser struct {
	ID       int64  `json:"id"`
	Username string `json:"username,omitempty"`
}

// RecordSource is the change that built the image.
type RecordSource struct {
	Project string       `json:"project,omitempty"`
	Commit  string       `json:"commit,omitempty"`
	Authors []RecordUser `json:"authors"` // authors and committers of the change and of its MRs
	// AuthorsError says why the authors could not be read.
	AuthorsError string `json:"authorsError,omitempty"`
	// MergeRequests are the IIDs of the source project's MRs that contain
	// the commit (added by the service; absent: not looked up).
	MergeRequests []int64 `json:"mergeRequests,omitempty"`
}

// RecordGate is one gate of the promotion.
type RecordGate struct {
	Name   string `json:"name"`   // signature, scan, soak, health
	Status string `json:"status"` // passed, skipped, failed, pending, not-required
	Reason string `json:"reason,omitempty"`
}

// RecordApprovals are the approvals of the promotion's MR.
type RecordApprovals struct {
	Required   int              `json:"required"`
	Counted    []RecordApproval `json:"counted"`
	NotCounted []RecordApproval `json:"notCounted"` // each with the reason
}

// RecordApproval is one approval.
type RecordApproval struct {
	User   RecordUser `json:"user"`
	Commit string     `json:"commit,omitempty"` // the MR's head it was given on
	At     *time.Time `json:"at,omitempty"`     // when lotse learned of it
	Reason string     `json:"reason,omitempty"` // why it does not count
}

// RecordMR is the GitOps merge request that promoted the image.
type RecordMR struct {
	Project     string      `json:"project,omitempty"` // the GitOps project (added by the service)
	IID         int         `json:"iid"`
	Author      RecordUser  `json:"author"`
	Commit      string      `json:"commit"`                // lotse's commit, the only one merged
	MergeCommit string      `json:"mergeCommit,omitempty"` // the default branch's head after the merge
	MergedBy    *RecordUser `json:"mergedBy,omitempty"`
}

// RecordTimes are when the steps happened, in UTC; absent: not known.
type RecordTimes struct {
	Started  *time.Time `json:"started,omitempty"`
	Opened   *time.Time `json:"opened,omitempty"`
	Approved *time.Time `json:"approved,omitempty"` // the last counted approval
	Merged   *time.Time `json:"merged,omitempty"`
	Landed   *time.Time `json:"landed,omitempty"`
	Synced   *time.Time `json:"synced,omitempty"`  // ArgoCD reported the version running
	Healthy  *time.Time `json:"healthy,omitempty"` // ArgoCD reported it healthy
}

// RecordVerification is what lotsed verified about the image when it wrote
// the record.
type RecordVerification struct {
	At        time.Time       `json:"at"`
	Signature RecordSignature `json:"signature"`
	// Attestations are the verified attestations of the image, each by the
	// digest of its DSSE envelope and of its in-toto statement.
	Attestations []RecordAttestation `json:"attestations"`
	Scan         *RecordScan         `json:"scan,omitempty"`
	// Notes say what could not be verified or read, and why.
	Notes []string `json:"notes,omitempty"`
}

// RecordSignature is the outcome of verifying the image's signature.
type RecordSignature struct {
	Verified bool `json:"verified"`
	// VerifiedBy is the public key or keyless identity that verified it.
	VerifiedBy string `json:"verifiedBy,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// RecordAttestation is one verified attestation.
type RecordAttestation struct {
	Type            string `json:"type"` // cyclonedx, spdxjson, vuln
	PredicateType   string `json:"predicateType,omitempty"`
	EnvelopeDigest  string `json:"envelopeDigest"`
	StatementDigest string `json:"statementDigest,omitempty"`
}

// RecordScan is what the verified vuln attestation says.
type RecordScan struct {
	Findings    int        `json:"findings"`
	MaxSeverity string     `json:"maxSeverity"` // NONE without findings
	ScannedAt   *time.Time `json:"scannedAt,omitempty"`
	AgeSeconds  *int64     `json:"ageSeconds,omitempty"` // how old the scan was when the record was written
}

// RecordFacts are what the service adds to a record: where it looked and
// what it verified.
type RecordFacts struct {
	GitOpsProject string
	SourceMRs     []int64
	Verification  *RecordVerification
}

// ErrNoRecord says there is no landed promotion through an approved merge
// request in the stage to write a record of.
var ErrNoRecord = errors.New("no promotion record")

// BuildRecord builds the record of the promotion that landed last in stage,
// an approval stage. It is pure: the same policy and state give the same
// record.
func BuildRecord(p Policy, s State, stage string) (Record, error) {
	ti := p.stageIndex(stage)
	if ti < 0 {
		return Record{}, fmt.Errorf("%w: unknown stage %q", ErrNoRecord, stage)
	}
	target := p.Stages[ti]
	if target.Mode != ModeApproval {
		return Record{}, fmt.Errorf("%w: stage %s is not an approval stage", ErrNoRecord, stage)
	}
	st := s.Stage(stage)
	if st == nil || st.Promotion == nil || st.Promotion.MR == nil || st.Promotion.Phase != PhaseLanded || st.Current == nil || st.Current.Image != st.Promotion.Image {
		return Record{}, fmt.Errorf("%w: nothing landed in %s through lotse's merge request", ErrNoRecord, stage)
	}
	pr, d := st.Promotion, st.Current
	if pr.MR.SHA == "" || d.Commit != pr.MR.SHA {
		// The same image, committed by a writer while lotse's MR waited:
		// not what the MR's approvals were given on.
		return Record{}, fmt.Errorf("%w: %s landed by commit %s, not by lotse's commit %s of !%d", ErrNoRecord, stage, short(d.Commit), short(pr.MR.SHA), pr.MR.IID)
	}
	r := Record{
		App:         p.App,
		Stage:       stage,
		PromotionID: pr.ID,
		Image:       pr.Image,
		Digest:      imageDigest(pr.Image),
		Rollback:    pr.Rollback,
		BreakGlass:  pr.BreakGlass,
		From:        pr.From,
		Source: RecordSource{
			Project:      orDefault(pr.SourceProject, d.SourceProject),
			Commit:       orDefault(pr.SourceCommit, d.SourceCommit),
			Authors:      recordUsers(pr.ChangeAuthors),
			AuthorsError: pr.AuthorsErr,
		},
		Gates: []RecordGate{
			recordGate("signature", pr.Gates.Signature),
			recordGate("scan", pr.Gates.Scan),
			recordGate("soak", pr.Gates.Soak),
			recordGate("health", pr.Gates.Health),
		},
		Approvals: RecordApprovals{Required: target.Approvals, Counted: []RecordApproval{}, NotCounted: []RecordApproval{}},
		MergeRequest: RecordMR{
			IID:         pr.MR.IID,
			Author:      recordUser(pr.MR.Author),
			Commit:      pr.MR.SHA,
			MergeCommit: d.Head,
		},
		Times: RecordTimes{
			Started: timePtr(pr.StartedAt),
			Opened:  timePtr(pr.MR.OpenedAt),
			Merged:  timePtr(pr.MR.MergedAt),
			Landed:  timePtr(d.LandedAt),
		},
	}
	if pr.Trigger.ID != 0 {
		u := recordUser(pr.Trigger)
		r.Trigger = &u
	}
	if pr.MR.MergedBy.ID != 0 {
		u := recordUser(pr.MR.MergedBy)
		r.MergeRequest.MergedBy = &u
	}
	var approved time.Time
	for _, a := range pr.MR.Approvers {
		ra := RecordApproval{User: recordUser(a.User), Commit: a.SHA, At: timePtr(a.At)}
		if why := approvalRejected(p, pr, a); why != "" {
			ra.Reason = why
			r.Approvals.NotCounted = append(r.Approvals.NotCounted, ra)
			continue
		}
		r.Approvals.Counted = append(r.Approvals.Counted, ra)
		if a.At.After(approved) {
			approved = a.At
		}
	}
	r.Times.Approved = timePtr(approved)
	if d.Health != nil && d.Health.Healthy {
		r.Times.Healthy = timePtr(d.Health.At)
		if d.Sync == "" || d.Sync == SyncRunning {
			r.Times.Synced = timePtr(d.Health.At)
		}
	}
	return r, nil
}

// WithFacts returns r with what the service found: its GitOps project,
// the source MRs and what it verified.
func (r Record) WithFacts(f RecordFacts) Record {
	if f.GitOpsProject != "" {
		r.MergeRequest.Project = f.GitOpsProject
	}
	if len(f.SourceMRs) > 0 {
		r.Source.MergeRequests = append([]int64(nil), f.SourceMRs...)
	}
	if f.Verification != nil {
		v := *f.Verification
		v.At = v.At.UTC()
		if v.Attestations == nil {
			v.Attestations = []RecordAttestation{}
		}
		if v.Scan != nil {
			sc := *v.Scan
			if sc.ScannedAt != nil && !v.At.IsZero() {
				age := int64(v.At.Sub(*sc.ScannedAt) / time.Second)
				sc.AgeSeconds = &age
			}
			v.Scan = &sc
		}
		r.Verification = &v
	}
	return r
}

// Summary is the record in a few lines, for people: where and how the
// image was promoted.
func (r Record) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s promoted %s into %s", r.App, r.Image, r.Stage)
	if r.From != "" {
		fmt.Fprintf(&b, " from %s", r.From)
	}
	if r.Rollback {
		b.WriteString(" (rollback)")
	}
	b.WriteString("\n")
	mr := fmt.Sprintf("!%d", r.MergeRequest.IID)
	if r.MergeRequest.Project != "" {
		mr = r.MergeRequest.Project + mr
	}
	fmt.Fprintf(&b, "  merge request: %s, lotse's commit %s, merged as %s\n", mr, short(r.MergeRequest.Commit), orDefault(short(r.MergeRequest.MergeCommit), "?"))
	fmt.Fprintf(&b, "  source: %s@%s, authors %s\n", orDefault(r.Source.Project, "?"), orDefault(short(r.Source.Commit), "?"), recordUserList(r.Source.Authors))
	fmt.Fprintf(&b, "  approvals: %d of %d required counted: ", len(r.Approvals.Counted), r.Approvals.Required)
	var names []string
	for _, a := range r.Approvals.Counted {
		names = append(names, showRecordUser(a.User))
	}
	b.WriteString(orDefault(strings.Join(names, ", "), "none"))
	b.WriteString("\n")
	for _, a := range r.Approvals.NotCounted {
		fmt.Fprintf(&b, "    not counted: %s (%s)\n", showRecordUser(a.User), a.Reason)
	}
	for _, g := range r.Gates {
		fmt.Fprintf(&b, "  gate %s: %s%s\n", g.Name, g.Status, reasonSuffix(g.Reason))
	}
	if r.BreakGlass != "" {
		fmt.Fprintf(&b, "  break-glass: %s\n", r.BreakGlass)
	}
	if t := r.Times.Merged; t != nil {
		fmt.Fprintf(&b, "  merged at %s\n", t.Format(time.RFC3339))
	}
	if v := r.Verification; v != nil {
		fmt.Fprintf(&b, "  signature verified: %t%s\n", v.Signature.Verified, reasonSuffix(orDefault(v.Signature.VerifiedBy, v.Signature.Reason)))
		if v.Scan != nil {
			fmt.Fprintf(&b, "  scan: %d findings, highest %s\n", v.Scan.Findings, v.Scan.MaxSeverity)
		}
	}
	return b.String()
}

func recordGate(name string, g Gate) RecordGate {
	status := string(g.Status)
	if g.Status == GateNotRequired {
		status = "not-required"
	}
	return RecordGate{Name: name, Status: status, Reason: g.Reason}
}

func recordUser(u User) RecordUser { return RecordUser{ID: u.ID, Username: u.Username} }

func recordUsers(us []User) []RecordUser {
	out := make([]RecordUser, 0, len(us))
	for _, u := range us {
		out = append(out, recordUser(u))
	}
	return out
}

func showRecordUser(u RecordUser) string {
	return User{ID: u.ID, Username: u.Username}.String() + fmt.Sprintf(" (#%d)", u.ID)
}

func recordUserList(us []RecordUser) string {
	var names []string
	for _, u := range us {
		names = append(names, showRecordUser(u))
	}
	return orDefault(strings.Join(names, ", "), "unknown")
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// imageDigest returns the sha256:... of a REPOSITORY@sha256:... reference,
// empty without one.
func imageDigest(ref string) string {
	_, d, ok := strings.Cut(ref, "@")
	if !ok {
		return ""
	}
	return d
}

// AttestPromotion asks the service to write the record of a promotion that
// landed in an approval stage: complete it with what the service verifies
// (Record.WithFacts), sign it as an in-toto attestation of Image with
// predicate type RecordPredicateType, and log it in the audit log. It is
// done once per promotion: a second AttestPromotion for the same record
// attaches nothing.
type AttestPromotion struct {
	Stage  string
	Image  string
	Record Record
}

func (AttestPromotion) action() {}

// attestPromotion asks for the record of the promotion that just landed in
// stage, when it is an approval stage.
func (en *engine) attestPromotion(stage string) {
	r, err := BuildRecord(en.p, en.s, stage)
	if err != nil {
		return // not an approval stage, or not through lotse's MR
	}
	en.emit(AttestPromotion{Stage: stage, Image: r.Image, Record: r})
}
