package sandbox

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHostRefusesBadTraceMessage: a trace listener the host did not ask
// for, or anything that is not one, ends the sandbox and leaks no fd.
func TestHostRefusesBadTraceMessage(t *testing.T) {
	for _, tt := range []struct {
		name  string
		trace bool
		fds   int
		want  string
	}{
		{"not-asked", false, 1, "not asked for"},
		{"not-a-listener", true, 1, "not a seccomp listener"},
		{"no-fd", true, 0, "carried 0 fds"},
		{"two-fds", true, 2, "carried 2 fds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, initFd := fakeInit(t)
			if tt.trace {
				s.setTrace(func(string) {})
			}
			var fds []int
			for range tt.fds {
				r, w, _ := os.Pipe()
				t.Cleanup(func() { r.Close(); w.Close() })
				fds = append(fds, int(r.Fd()))
			}
			before := openFds(t)
			var oob []byte
			if len(fds) > 0 {
				oob = unix.UnixRights(fds...)
			}
			if err := unix.Sendmsg(initFd, []byte{msgTrace}, oob, nil, 0); err != nil {
				t.Fatal(err)
			}
			<-s.readerDone
			if s.protoErr == nil || !strings.Contains(s.protoErr.Error(), tt.want) {
				t.Errorf("protocol error %v, want %q", s.protoErr, tt.want)
			}
			if after := openFds(t); after != before {
				t.Errorf("%d fds open after, %d before: leaked", after, before)
			}
		})
	}
}
