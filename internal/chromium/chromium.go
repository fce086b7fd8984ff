// Package chromium starts Debian's headless Chromium for tests and
// benchmarks that look at a page as a person would (chromedp).
package chromium

import (
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// Find returns the browser, or skips the test saying how to install it
// (.ci/run installs it).
func Find(t testing.TB, what string) string {
	t.Helper()
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skipf("chromium is not installed (apt-get install -y chromium): %s", what)
	}
	return browser
}

// Start runs a headless browser with a fresh profile in profileDir,
// stopped at the test's cleanup; contexts made from the one it returns
// (chromedp.NewContext) are tabs of it. The flags are those a root user needs on
// a machine without a display or a network: no sandbox, no GPU, no QUIC,
// no background traffic. The API's certificate is a data directory's own,
// so certificate errors are ignored.
func Start(t testing.TB, browser, profileDir string, width, height int) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(profileDir),
		chromedp.WindowSize(width, height),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// Start the browser now: a context made from this one then opens a
	// new tab in it (otherwise each would start a browser of its own, on
	// the same profile).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// Problems collects what a tab reports as wrong: console errors and
// warnings, exceptions, and the browser's own log entries of those levels
// (a request that failed, a resource refused by the page's policy).
type Problems struct {
	mu   sync.Mutex
	list []string
}

// Watch collects the problems of the tab of ctx until ctx ends.
func (p *Problems) Watch(ctx context.Context) {
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				p.mu.Lock()
				p.list = append(p.list, m.String())
				p.mu.Unlock()
			}
		}
	}()
}

// Check fails the test with every problem collected so far.
func (p *Problems) Check(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.list) > 0 {
		t.Errorf("the browser reported problems:\n%s", strings.Join(p.list, "\n"))
	}
}
