// Package browsertest starts the headless Chromium that the web UI's and
// the real apps' end-to-end tests drive. It is its own package so that
// only the tests that use a browser link chromedp.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// Path finds Debian's chromium (which .ci/run installs), or skips the test.
func Path(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the browser tests")
	return ""
}

// options are what every test's Chromium runs with: no sandbox or GPU on
// CI machines, nothing fetched from the network.
func options(path, profile string) []chromedp.ExecAllocatorOption {
	return append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
	)
}

// Start runs a Chromium of the test's own at path, with a profile of its
// own and the options every test wants plus extra (for a test that needs
// its own flags or environment); it returns the browser's root context,
// ready, and ends it when the test does. Tests without such needs use
// Shared.
func Start(t testing.TB, path string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(options(path, t.TempDir()), extra...)...)
	t.Cleanup(cancelAlloc)
	root, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(root, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return root
}

// shared is the one Chromium of a test process that Shared hands out:
// started by the first test that asks, stopped by Close. One browser
// with a context per test lets browser tests run in parallel, where a
// Chromium each failed to start its processes on two busy cores.
var shared struct {
	mu      sync.Mutex
	root    context.Context
	stop    func()
	profile string
	err     error
}

// Shared returns a tab in a browser context of the test's own (its own
// cookies, storage and cache) in the test process's shared Chromium,
// which it starts on first use. The context is disposed, with every tab
// opened from it, when the test ends. A TestMain that lets its tests use
// Shared calls Close after m.Run.
func Shared(t testing.TB) context.Context {
	t.Helper()
	path := Path(t)
	root, err := sharedRoot(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("open a browser context in the shared chromium: %v", err)
	}
	return ctx
}

func sharedRoot(path string) (context.Context, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.root != nil || shared.err != nil {
		return shared.root, shared.err
	}
	profile, err := os.MkdirTemp("", "erg-chromium-")
	if err != nil {
		shared.err = err
		return nil, err
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), options(path, profile)...)
	root, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(root, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		cancelAlloc()
		os.RemoveAll(profile)
		shared.err = fmt.Errorf("start the shared chromium: %w", err)
		return nil, shared.err
	}
	shared.root, shared.profile = root, profile
	shared.stop = func() { cancel(); cancelAlloc() }
	return root, nil
}

// Close stops the shared Chromium, if a test started it, and removes its
// profile.
func Close() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.stop != nil {
		shared.stop()
		os.RemoveAll(shared.profile)
	}
	shared.root, shared.stop, shared.err = nil, nil, nil
}
