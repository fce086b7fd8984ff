package gameday_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lifeline-dr/lifeline/internal/chromium"
)

// TestReport_HTMLInChromium: report.html loads in headless Chromium with no
// console error, no request leaving the file, and its three charts drawn.
// A screenshot is saved beside the test's temporary files (its path is
// logged). Skipped only where Chromium is not installed (apt-get install
// chromium; .ci/run installs it).
func TestReport_HTMLInChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install -y chromium): the HTML report is not checked in a browser")
	}
	dir := t.TempDir()
	writeSynthetic(t, dir)
	page := "file://" + filepath.Join(dir, "report.html")

	ctx, cancel := context.WithTimeout(chromium.Start(t, browser, filepath.Join(dir, "profile"), 1200, 900), 90*time.Second)
	defer cancel()
	var problems chromium.Problems
	problems.Watch(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible("figure.chart svg")); err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	charts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("figure.chart svg").length`))
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`Array.from(document.querySelectorAll("figure.chart svg")).map(s => s.getBoundingClientRect().width * s.getBoundingClientRect().height)`))
	if err != nil {
		t.Fatal(err)
	}
	// Resources the page fetched besides itself: none for a self-contained file.
	external, err := chromedp.Run(ctx, chromedp.Evaluate[int](`performance.getEntriesByType("resource").length`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	problems.Check(t)
	if external != 0 {
		t.Errorf("the report loaded %d resources; it must be self-contained", external)
	}
	if charts != 3 {
		t.Errorf("%d charts drawn, want 3", charts)
	}
	for i, s := range sizes {
		if s < 10000 {
			t.Errorf("chart %d is %.0f px² on the page: not drawn", i, s)
		}
	}
	if !strings.Contains(title, "zone-loss") {
		t.Errorf("title %q", title)
	}
	out := filepath.Join(os.TempDir(), "lifeline-gameday-report.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("report.html: %d charts, no console error; screenshot %s", charts, out)
}
