package promotion

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

// fuzzPolicy is testPolicy with short soaks and few merge attempts, so random
// sequences reach every phase.
func fuzzPolicy() Policy {
	p := testPolicy()
	p.Stages[1].Soak = 10 * time.Minute
	p.Stages[2].Soak = 20 * time.Minute
	p.Stages[2].MaxScanAge = 24 * time.Hour
	p.MergeAttempts = 3
	return p
}

var (
	fuzzImages = []string{img1, img2, img3}
	fuzzUsers  = []User{usr("carol"), usr("erin"), usr("dave"), usr("mallory"), usr("lotse-bot"), usr("olga"), usr("eve")}
)

// chunk is how many bytes one event takes, so seeds are easy to write.
const chunk = 10

// decoder turns fuzz bytes into events, one chunk each. It looks at the
// state so that most events fit the promotion in flight (its image, its MR,
// its attempt) and random sequences get past the first phases.
type decoder struct {
	data []byte
	cur  []byte
	note int64
}

func (d *decoder) byte() byte {
	if len(d.cur) == 0 {
		return 0
	}
	b := d.cur[0]
	d.cur = d.cur[1:]
	return b
}

func (d *decoder) pick(n int) int { return int(d.byte()) % n }

func (d *decoder) next(p Policy, s State, now *time.Time) Event {
	n := min(chunk, len(d.data))
	d.cur, d.data = d.data[:n], d.data[n:]
	op := d.pick(16)
	stage := p.Stages[d.pick(len(p.Stages))].Name
	var pr *Promotion
	if st := s.Stage(stage); st != nil {
		pr = st.Promotion
	}
	image := fuzzImages[d.pick(len(fuzzImages))]
	iid := 1 + d.pick(4)
	attempt := 0
	fit := d.byte()&1 == 0 // use the promotion's own values
	if pr != nil && fit {
		image = pr.Image
		if pr.MR != nil {
			iid = pr.MR.IID
		}
		attempt = pr.MergeAttempts
	}
	user := fuzzUsers[d.pick(len(fuzzUsers))]
	switch op {
	case 13, 14, 15:
		return d.progress(p, s, stage, pr, now)
	case 0:
		ti := p.stageIndex(stage)
		if pr != nil && fit && pr.Phase == PhaseMerged {
			// image is the promotion's
		} else if ti > 0 && fit {
			if prev := s.Stage(p.Stages[ti-1].Name); prev != nil && prev.Current != nil {
				image = prev.Current.Image
			}
		}
		l := Landed{Pusher: bot, Stage: stage, Image: image, SourceProject: "team/shop", SourceCommit: "src-" + image[len(image)-4:],
			ChangeAuthors: []User{usr("dave")}, Commit: fmt.Sprintf("c%d", d.pick(16)), At: *now}
		switch d.byte() % 8 {
		case 0:
			l.Pusher = user // anyone who can push to the default branch
		case 1:
			l.Mismatch = "the values file holds another image"
		case 2:
			l.ChangeAuthors, l.AuthorsErr = nil, "403 Forbidden"
		}
		return l
	case 1:
		return MROpened{Stage: stage, IID: iid, Author: user, Image: image}
	case 2:
		return MRUpdated{Stage: stage, IID: iid, SHA: fmt.Sprintf("sha%d", d.pick(3)), Pusher: user}
	case 3:
		sha := fmt.Sprintf("sha%d", d.pick(3))
		if pr != nil && pr.MR != nil && fit {
			sha = pr.MR.SHA
		}
		return MRApproved{Stage: stage, IID: iid, User: user, SHA: sha}
	case 4:
		return MRUnapproved{Stage: stage, IID: iid, User: user}
	case 5:
		return MRMerged{Stage: stage, IID: iid, By: user}
	case 6:
		return MRClosed{Stage: stage, IID: iid}
	case 7:
		texts := []string{
			"/lotse promote " + stage, "/lotse rollback " + stage, "/lotse retry", "/lotse retry " + stage,
			"/lotse rollback " + stage + " " + image[strings.LastIndex(image, "@")+1:], "LGTM", "/lotse bogus", "/lotse accept " + stage, "/lotse freeze " + stage + " incident", "/lotse unfreeze all", "/lotse promote " + stage + " --break-glass hotfix",
		}
		d.note++
		note := d.note
		if d.byte()%4 == 0 && note > 1 {
			note-- // a re-delivered or reused note id
		}
		cmdStage := stage
		if d.byte()%3 == 0 {
			cmdStage = ""
		}
		return Command{Stage: cmdStage, IID: iid, NoteID: note, User: user, Text: texts[d.pick(len(texts))]}
	case 8:
		res := func(b byte) Result { return Result{Checked: b%8 != 0, OK: b%4 != 1, Reason: fmt.Sprintf("r%d", b%4)} }
		b := d.byte()
		scan := ScanFacts{Checked: b&0x30 != 0, Findings: int(b>>6) * 3, Highest: vuln.Severity(d.pick(5)), Reason: fmt.Sprintf("s%d", b%3)}
		if age := d.pick(4); age > 0 { // 0: no scan time; else 0h, 20h, 40h old
			scan.ScannedAt = now.Add(-time.Duration(age-1) * 20 * time.Hour)
		}
		return GatesChecked{Stage: stage, Image: image, Signature: res(b), Scan: scan}
	case 9:
		return Health{Stage: stage, Healthy: d.byte()&1 == 0, Reason: fmt.Sprintf("h%d", d.pick(2)), At: *now}
	case 10:
		outcomes := []MergeOutcome{MergeDone, MergeNotYet, MergeNotMergeable, MergeAlreadyMerged, MergeNotYet, MergeTampered}
		if !fit {
			attempt = d.pick(4)
		}
		return MergeResult{Stage: stage, IID: iid, Attempt: attempt, Outcome: outcomes[d.pick(len(outcomes))]}
	case 11:
		switch d.byte() % 4 {
		case 0:
			return OutOfBandChange{Stage: stage, Commit: fmt.Sprintf("c%d", d.pick(16)), Pusher: user, Reason: "values changed without trailers", At: *now}
		case 1:
			authors := AuthorsRead{Stage: stage, Image: image, Authors: []User{usr("dave"), user}}
			if d.byte()&1 == 0 {
				authors.Err = "503"
			}
			return authors
		}
		*now = now.Add(time.Duration(d.pick(16)) * time.Minute)
		return Tick{}
	default:
		*now = now.Add(time.Duration(d.pick(64)) * time.Minute)
		return Tick{}
	}
}

// progress returns the event the promotion into stage waits for, so random
// sequences walk whole promotions.
func (d *decoder) progress(p Policy, s State, stage string, pr *Promotion, now *time.Time) Event {
	ti := p.stageIndex(stage)
	if pr == nil || pr.Phase.IsTerminal() {
		if ti == 0 || d.byte()&1 == 0 {
			img := fuzzImages[d.pick(len(fuzzImages))]
			return Landed{Pusher: bot, Stage: p.Stages[0].Name, Image: img, SourceCommit: "src-" + img[len(img)-4:], ChangeAuthors: []User{usr("dave")},
				Commit: fmt.Sprintf("c%d", d.pick(64)), At: *now}
		}
		d.note++
		return Command{Stage: stage, IID: 1, NoteID: d.note, User: usr("olga"), Text: "/lotse promote " + stage}
	}
	iid := 1 + d.pick(4)
	if pr.MR != nil {
		iid = pr.MR.IID
	}
	switch pr.Phase {
	case PhaseChecking:
		return GatesChecked{Stage: stage, Image: pr.Image, Signature: Result{Checked: true, OK: true}, Scan: ScanFacts{Checked: true}}
	case PhaseWaiting:
		if d.byte()&1 == 0 {
			return Health{Stage: pr.From, Healthy: true, At: *now}
		}
		*now = now.Add(time.Duration(d.pick(32)) * time.Minute)
		return Tick{}
	case PhaseOpening:
		return MROpened{Stage: stage, IID: iid, Author: usr("lotse-bot"), Image: pr.Image, SHA: fmt.Sprintf("sha%d", d.pick(3))}
	case PhaseAwaitingApproval:
		if pr.AuthorsErr != "" && d.byte()&1 == 0 {
			return AuthorsRead{Stage: stage, Image: pr.Image, Authors: []User{usr("dave")}}
		}
		sha := ""
		if pr.MR != nil {
			sha = pr.MR.SHA
		}
		return MRApproved{Stage: stage, IID: iid, User: fuzzUsers[d.pick(len(fuzzUsers))], SHA: sha}
	case PhaseMerging:
		if pr.RetryMerge {
			return Tick{}
		}
		outcomes := []MergeOutcome{MergeDone, MergeNotYet, MergeAlreadyMerged}
		return MergeResult{Stage: stage, IID: iid, Attempt: pr.MergeAttempts, Outcome: outcomes[d.pick(len(outcomes))]}
	case PhaseMerged:
		return Landed{Pusher: bot, Stage: stage, Image: pr.Image, SourceCommit: pr.SourceCommit, Commit: fmt.Sprintf("c%d", d.pick(64)), At: *now}
	}
	return Tick{}
}

var allowed = map[Phase][]Phase{
	PhaseChecking:         {PhaseWaiting, PhaseOpening, PhaseBlocked, PhaseSuperseded, PhaseLanded},
	PhaseWaiting:          {PhaseOpening, PhaseBlocked, PhaseSuperseded, PhaseLanded},
	PhaseOpening:          {PhaseAwaitingApproval, PhaseMerging, PhaseSuperseded, PhaseLanded},
	PhaseAwaitingApproval: {PhaseMerging, PhaseMerged, PhaseCancelled, PhaseSuperseded, PhaseLanded, PhaseTampered},
	PhaseMerging:          {PhaseMerged, PhaseAwaitingApproval, PhaseBlocked, PhaseCancelled, PhaseSuperseded, PhaseLanded, PhaseTampered},
	PhaseMerged:           {PhaseLanded},
	PhaseBlocked:          {PhaseChecking, PhaseWaiting, PhaseOpening, PhaseMerging, PhaseAwaitingApproval, PhaseMerged, PhaseCancelled, PhaseLanded, PhaseTampered},
	PhaseTampered:         {PhaseChecking, PhaseWaiting, PhaseOpening, PhaseLanded},
	PhaseLanded:           nil,
	PhaseSuperseded:       nil,
	PhaseCancelled:        nil,
}

var initial = []Phase{PhaseChecking, PhaseWaiting, PhaseOpening, PhaseBlocked}

func contains(ps []Phase, p Phase) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// checkStep verifies the invariants of one step from old to s with acts.
func checkStep(p Policy, old, s State, e Event, acts []Action) error {
	for _, a := range acts {
		var stage string
		var iid int
		switch a := a.(type) {
		case OpenMR:
			stage = a.Stage
		case Rollback:
			stage = a.Stage
		case MergeMR:
			stage, iid = a.Stage, a.IID
		default:
			continue
		}
		ti := p.stageIndex(stage)
		st := s.Stage(stage)
		if ti < 0 || st == nil || st.Promotion == nil {
			return fmt.Errorf("%T for stage %s without a promotion", a, stage)
		}
		pr := st.Promotion
		if !pr.Gates.Passed() {
			return fmt.Errorf("%T for stage %s with gates %+v", a, stage, pr.Gates)
		}
		if m, ok := a.(MergeMR); ok {
			if pr.MR == nil || pr.MR.IID != iid || pr.Phase != PhaseMerging {
				return fmt.Errorf("MergeMR !%d for stage %s, promotion %+v", iid, stage, pr)
			}
			if m.SHA != pr.MR.SHA || !pr.MR.Author.Is(p.Bot) {
				return fmt.Errorf("MergeMR !%d of %s at %q, but lotse's commit is %q", iid, pr.MR.Author, m.SHA, pr.MR.SHA)
			}
			if target := p.Stages[ti]; target.Mode == ModeApproval {
				if n := len(ValidApprovers(p, s, stage)); n < target.Approvals {
					return fmt.Errorf("MergeMR on approval stage %s with %d valid approvers (%v)", stage, n, pr.MR.Approvers)
				}
			}
		}
	}
	for _, sp := range p.Stages {
		var was, is *Promotion
		if st := old.Stage(sp.Name); st != nil {
			was = st.Promotion
		}
		if st := s.Stage(sp.Name); st != nil {
			is = st.Promotion
		}
		switch {
		case is == nil:
			if was != nil {
				return fmt.Errorf("promotion into %s vanished", sp.Name)
			}
		case was == nil || was.ID != is.ID:
			if was != nil && is.ID <= was.ID {
				return fmt.Errorf("promotion id into %s went from %d to %d", sp.Name, was.ID, is.ID)
			}
			if !contains(initial, is.Phase) {
				return fmt.Errorf("new promotion into %s starts in %s", sp.Name, is.Phase)
			}
			if was != nil && !was.Phase.replaceable() {
				prev := s.Stage(sp.Name).Previous
				if prev == nil || prev.ID != was.ID || prev.Phase != PhaseSuperseded {
					return fmt.Errorf("promotion %d into %s in %s replaced without being superseded", was.ID, sp.Name, was.Phase)
				}
			}
		case was.Phase != is.Phase:
			if !contains(allowed[was.Phase], is.Phase) {
				return fmt.Errorf("promotion into %s moved %s → %s on %T", sp.Name, was.Phase, is.Phase, e)
			}
		}
	}
	if l, ok := e.(Landed); ok && (l.Mismatch != "" || !p.IsWriter(l.Pusher)) {
		if st, was := s.Stage(l.Stage), old.Stage(l.Stage); st != nil && st.Current != nil && (was == nil || was.Current == nil || was.Current.Commit != st.Current.Commit) {
			return fmt.Errorf("an untrusted commit %s (pusher %s, mismatch %q) landed in %s", l.Commit, l.Pusher, l.Mismatch, l.Stage)
		}
	}
	if reflect.DeepEqual(old, s) {
		for _, a := range acts {
			switch a.(type) {
			case Reply, Audit, ReadAuthors, Reconcile:
				// a command without a note id may answer without a change;
				// ticks read facts back from GitLab
			default:
				return fmt.Errorf("no change, but %T", a)
			}
		}
	} else if s.Seq != old.Seq+1 {
		return fmt.Errorf("state changed, seq %d → %d", old.Seq, s.Seq)
	}
	return nil
}

func FuzzNext(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 8, 1, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 40})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x08\x01\x00\x00\x00\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x30\x01\x01\x00\x00\x00\x00\x01"))
	f.Add([]byte("the quick brown fox jumps over the lazy dog, twice: the quick brown fox jumps over the lazy dog"))
	f.Add([]byte{7, 2, 0, 0, 0, 5, 0, 0, 0, 3, 2, 0, 0, 0, 0, 10, 2, 0, 0, 0, 0, 1, 11, 0, 0, 0, 0, 0, 3})
	seq := []byte{}
	for i := range 200 {
		seq = append(seq, byte(i*37), byte(i*11), byte(i*5), byte(i), byte(i*3), byte(i*7), byte(i*13))
	}
	f.Add(seq)
	// walks: the expected next event for dev, staging, production in turn,
	// with users, outcomes and clock steps varying, then ChatOps and noise.
	ev := func(b ...byte) []byte { c := make([]byte, chunk); copy(c, b); return c }
	var walk []byte
	for i := range 60 {
		stage := byte(1 + i/20%2)
		if i%20 == 0 {
			stage = 0
		}
		walk = append(walk, ev(13, stage, 0, 0, 0, 0, byte(i), byte(i), 31)...)
	}
	f.Add(walk)
	rb := append([]byte(nil), walk...)
	rb = append(rb, ev(7, 2, 0, 0, 0, 5, 1, 1, 1)...)  // olga: /lotse rollback production
	rb = append(rb, ev(7, 1, 0, 0, 0, 6, 1, 1, 2)...)  // eve: /lotse retry (denied)
	rb = append(rb, ev(7, 1, 0, 0, 0, 5, 1, 1, 2)...)  // olga: /lotse retry
	rb = append(rb, ev(7, 1, 0, 0, 0, 5, 1, 2, 3)...)  // olga: /lotse retry staging
	rb = append(rb, ev(13, 2, 0, 0, 0, 0, 0, 0, 0)...) // the rollback MR opens
	rb = append(rb, ev(4, 2, 0, 0, 0, 0, 0)...)        // carol unapproves
	rb = append(rb, ev(10, 1, 0, 0, 1, 0, 2, 2)...)    // a stale merge result
	rb = append(rb, ev(6, 2, 0, 0, 0, 0)...)           // production MR closed
	rb = append(rb, ev(7, 2, 0, 0, 0, 5, 1, 1, 0)...)  // olga: /lotse promote production
	f.Add(rb)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := fuzzPolicy()
		d := &decoder{data: data}
		var s State
		now := t0
		for step := 0; len(d.data) > 0 && step < 300; step++ {
			e := d.next(p, s, &now)
			before := s.clone()
			s2, acts, err := Next(p, s, e, now)
			if err != nil {
				t.Fatalf("step %d: Next(%#v): %v", step, e, err)
			}
			if !reflect.DeepEqual(before, s) {
				t.Fatalf("step %d: Next changed its input", step)
			}
			s3, acts3, err3 := Next(p, s, e, now)
			if err3 != nil || !reflect.DeepEqual(s2, s3) || !reflect.DeepEqual(acts, acts3) {
				t.Fatalf("step %d: Next is not deterministic for %#v", step, e)
			}
			if err := checkStep(p, s, s2, e, acts); err != nil {
				t.Fatalf("step %d, %#v: %v\nactions:%s", step, e, err, describe(acts))
			}
			b, err := json.Marshal(s2)
			if err != nil {
				t.Fatal(err)
			}
			var back State
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, s2) {
				t.Fatalf("step %d: JSON round trip is lossy:\n%s", step, b)
			}
			s4, acts4, err := Next(p, s2, e, now)
			if err != nil || !reflect.DeepEqual(s4, s2) || len(withoutReads(acts4)) != 0 {
				t.Fatalf("step %d: delivering %#v twice: %v, actions%s", step, e, err, describe(acts4))
			}
			s = s2
		}
	})
}
