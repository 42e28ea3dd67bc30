package gitops

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Freeze is a window in which no promotion into its stages is merged
// (lotse.yaml freezes): a dated one (From, Until) or a recurring one that
// starts whenever Cron matches and lasts Duration. Times are UTC.
type Freeze struct {
	Reason   string
	Stages   []string // empty: every stage
	From     time.Time
	Until    time.Time
	Cron     string
	Duration time.Duration
	cron     *cronSpec
}

// Applies reports whether the freeze covers stage.
func (f Freeze) Applies(stage string) bool {
	if len(f.Stages) == 0 {
		return true
	}
	for _, s := range f.Stages {
		if s == stage {
			return true
		}
	}
	return false
}

// ActiveAt reports whether the freeze is in force at t, and until when.
func (f Freeze) ActiveAt(t time.Time) (bool, time.Time) {
	t = t.UTC()
	if f.cron == nil {
		return !t.Before(f.From) && t.Before(f.Until), f.Until
	}
	// The latest start at or before t within Duration; minutes, newest
	// first, so the window found is the one that ends last.
	start := t.Truncate(time.Minute)
	for d := time.Duration(0); d <= f.Duration; d += time.Minute {
		if s := start.Add(-d); f.cron.matches(s) {
			if end := s.Add(f.Duration); t.Before(end) {
				return true, end
			}
			return false, time.Time{}
		}
	}
	return false, time.Time{}
}

// cronSpec is a five-field cron expression (minute hour day-of-month month
// day-of-week): numbers, *, ranges a-b, lists a,b and steps */n or a-b/n.
// Day of month and day of week both must match when both are given.
type cronSpec struct {
	fields [5]map[int]bool // nil: any
}

var cronRanges = [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 6}}

func parseCron(s string) (*cronSpec, error) {
	parts := strings.Fields(s)
	if len(parts) != 5 {
		return nil, fmt.Errorf("cron %q: want five fields (minute hour day-of-month month day-of-week)", s)
	}
	c := &cronSpec{}
	for i, p := range parts {
		if p == "*" {
			continue
		}
		set := map[int]bool{}
		for _, item := range strings.Split(p, ",") {
			rng, step := item, 1
			if r, st, ok := strings.Cut(item, "/"); ok {
				n, err := strconv.Atoi(st)
				if err != nil || n < 1 {
					return nil, fmt.Errorf("cron %q: bad step %q", s, st)
				}
				rng, step = r, n
			}
			lo, hi := cronRanges[i][0], cronRanges[i][1]
			if rng != "*" {
				a, b, isRange := strings.Cut(rng, "-")
				var err error
				if lo, err = strconv.Atoi(a); err != nil {
					return nil, fmt.Errorf("cron %q: bad value %q", s, a)
				}
				hi = lo
				if isRange {
					if hi, err = strconv.Atoi(b); err != nil {
						return nil, fmt.Errorf("cron %q: bad value %q", s, b)
					}
				}
			}
			if i == 4 && hi == 7 { // Sunday as 7
				hi = 6
				set[0] = true
			}
			if lo < cronRanges[i][0] || hi > cronRanges[i][1] || lo > hi {
				return nil, fmt.Errorf("cron %q: %q is out of range %d-%d", s, item, cronRanges[i][0], cronRanges[i][1])
			}
			for v := lo; v <= hi; v += step {
				set[v] = true
			}
		}
		c.fields[i] = set
	}
	return c, nil
}

func (c *cronSpec) matches(t time.Time) bool {
	vals := [5]int{t.Minute(), t.Hour(), t.Day(), int(t.Month()), int(t.Weekday())}
	for i, set := range c.fields {
		if set != nil && !set[vals[i]] {
			return false
		}
	}
	return true
}
