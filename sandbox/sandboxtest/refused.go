package sandboxtest

import (
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"erg/sandbox"

	"golang.org/x/sys/unix"
)

// refusedReport is the probe's /refused answer: errno by attempt.
type refusedReport struct {
	Calls   map[string]int `json:"calls"`
	Sockets map[string]int `json:"sockets"`
	Ioctls  map[string]int `json:"ioctls"`
}

func (b *battery) refused(t *testing.T) *refusedReport {
	t.Helper()
	raw, _ := json.Marshal(b.json(t, "/refused"))
	var r refusedReport
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// refusedSyscalls: every syscall the table refuses, made from inside the
// grain, fails with the table's errno.
func (b *battery) refusedSyscalls(t *testing.T) {
	r := b.refused(t)
	want := sandbox.RefusedSyscalls()
	if len(want) < 50 {
		t.Fatalf("the table refuses only %d calls", len(want))
	}
	for _, c := range want {
		got, ok := r.Calls[strconv.Itoa(int(c.Nr))]
		if !ok {
			t.Errorf("syscall %d was not tried", c.Nr)
		} else if syscall.Errno(got) != c.Errno {
			t.Errorf("syscall %d: errno %d (%v), want %d (%v)", c.Nr, got, syscall.Errno(got), int(c.Errno), c.Errno)
		}
	}
}

// socketFamilies: every family but unix, inet, inet6 and netlink-route
// fails with EAFNOSUPPORT, for socket and socketpair, in every type.
func (b *battery) socketFamilies(t *testing.T) {
	r := b.refused(t)
	allowed := map[int]bool{unix.AF_UNIX: true, unix.AF_INET: true, unix.AF_INET6: true}
	refused := 0
	for key, got := range r.Sockets {
		f := strings.Split(strings.TrimPrefix(key, "pair/"), "/")
		fam, _ := strconv.Atoi(f[0])
		proto, _ := strconv.Atoi(f[2])
		if allowed[fam] || fam == unix.AF_NETLINK && proto == unix.NETLINK_ROUTE {
			continue // the kernel decides
		}
		refused++
		if syscall.Errno(got) != syscall.EAFNOSUPPORT {
			t.Errorf("socket %s (family/type/protocol): errno %d (%v), want EAFNOSUPPORT", key, got, syscall.Errno(got))
		}
	}
	if refused < 100 {
		t.Errorf("only %d refused socket attempts were made", refused)
	}
	// Controls: what is allowed works.
	for _, key := range []string{"1/1/0", "pair/1/1/0", "2/2/0", "10/1/0", "16/3/0"} {
		if got, ok := r.Sockets[key]; !ok || got != 0 {
			t.Errorf("socket %s: errno %d (tried: %v), want success", key, got, ok)
		}
	}
	for _, key := range []string{"40/1/0", "16/3/9", "16/2/15"} { // AF_VSOCK, NETLINK_AUDIT, NETLINK_KOBJECT_UEVENT
		if _, ok := r.Sockets[key]; !ok {
			t.Errorf("socket %s was not tried", key)
		}
	}
}

// ioctls: the terminal injection requests are refused by the filter
// (EPERM; the kernel itself would say ENOTTY on /dev/null).
func (b *battery) ioctls(t *testing.T) {
	r := b.refused(t)
	for _, req := range []uint{unix.TIOCSTI, unix.TIOCLINUX, unix.TIOCCONS, unix.TIOCSETD} {
		key := strconv.FormatUint(uint64(req), 16)
		if got := syscall.Errno(r.Ioctls[key]); got != syscall.EPERM {
			t.Errorf("ioctl %s: errno %d (%v), want EPERM", key, int(got), got)
		}
	}
}
