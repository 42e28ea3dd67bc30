package guardrails_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/guardrails"
)

// TestGitOpsKnowsTheRules keeps the rule ids and severities lotse.yaml
// accepts (gitops cannot import this package) in step with the rules here.
func TestGitOpsKnowsTheRules(t *testing.T) {
	if got, want := gitops.GuardrailRuleIDs(), guardrails.RuleIDs(); !slices.Equal(got, want) {
		t.Errorf("gitops.GuardrailRuleIDs() = %v, want %v", got, want)
	}
	for _, s := range gitops.GuardrailSeverities() {
		if sev, err := guardrails.ParseSeverity(s); err != nil || sev.String() != strings.ToLower(s) {
			t.Errorf("severity %q: %v", s, err)
		}
	}
}
