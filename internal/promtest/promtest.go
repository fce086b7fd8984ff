// Package promtest checks a Prometheus scrape the way Prometheus's own
// linter does, in tests.
package promtest

import (
	"bytes"
	"os/exec"
	"testing"
)

// Check runs `promtool check metrics` on a scrape (the text format) and
// fails the test on any complaint. Skipped, saying so, where promtool is
// not installed (Debian: apt-get install prometheus; .ci/run installs it).
func Check(t testing.TB, scrape []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (apt-get install -y prometheus): the metrics are not linted")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
