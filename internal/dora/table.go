package dora

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable writes the figures as a table, one line per app and stage:
// deployments and per day, the median lead times, the change failure rate
// and the median time to restore, each with its number of samples.
func WriteTable(w io.Writer, fs []Figures) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tSTAGE\tDEPLOYMENTS\tPER DAY\tLEAD TIME FROM MERGE\tFROM FIRST COMMIT\tCHANGE FAILURE RATE\tTIME TO RESTORE")
	for _, f := range fs {
		rate := "-"
		if f.Deployments > 0 {
			rate = fmt.Sprintf("%.0f%% (%d/%d)", 100*f.ChangeFailureRate, f.Failures, f.Deployments)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%s\t%s\t%s\t%s\n", f.App, f.Stage, f.Deployments, f.PerDay,
			median(f.LeadTimeFromMerge), median(f.LeadTimeFromFirstCommit), rate, median(f.TimeToRestore))
	}
	return tw.Flush()
}

// median shows a Stat: "1.5h (5)", "-" without samples.
func median(s Stat) string {
	if s.Samples == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fh (%d)", s.MedianHours, s.Samples)
}
