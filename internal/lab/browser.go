package lab

import (
	"context"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"

	"erg/internal/browsertest"
)

// Chromium starts a headless Chromium inside the namespace, as a person's
// browser on that network would run: every connection it makes starts
// there (its localhost is the namespace's loopback, its routes the
// namespace's). chromedp drives it over --remote-debugging-pipe, file
// descriptors that `ip netns exec` passes on, so no debugging port has to
// be reached across the namespace's edge. extra adds Chromium options
// (e.g. --host-resolver-rules for names only the lab knows). It returns
// the browser's root context, ready; the browser ends with the test. It
// skips the test where Chromium is not installed.
func (ns *NS) Chromium(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := browsertest.Path(t)
	inside := chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
		ip, err := exec.LookPath("ip")
		if err != nil {
			ip = "/usr/sbin/ip"
		}
		cmd.Args = append([]string{"ip", "netns", "exec", ns.Full, cmd.Path}, cmd.Args[1:]...)
		cmd.Path = ip
	})
	return browsertest.Start(t, path, append([]chromedp.ExecAllocatorOption{inside}, extra...)...)
}
