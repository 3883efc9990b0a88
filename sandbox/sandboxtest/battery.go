package sandboxtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Target is a grain running the probe (ProbeArgs in a BuildProbeTree
// tree), as the battery sees it.
type Target struct {
	// Get makes an HTTP GET of path (with its query) to the probe, by
	// whatever route the caller tests: a sandbox's dialer, the node's proxy.
	Get func(ctx context.Context, path string) (status int, body []byte, err error)

	// HostFiles are host paths the grain must not be able to read (the
	// node's erg.db, identity.key, ...). The battery adds its own.
	HostFiles []string
	// OtherVarFile is the host path of a file in another grain's /var,
	// holding OtherVarContent. Empty skips the check.
	OtherVarFile, OtherVarContent string

	// The limits the grain runs with; 0 says there is none and skips the
	// check (a runner without cgroups).
	Pids        int
	MemoryBytes int64
	NoFile      uint64

	// Restart is called after the memory hog has killed the app and must
	// return once a new instance can be reached through Get. Nil means the
	// target restarts the grain by itself on the next request.
	Restart func(ctx context.Context) error
}

// Battery tries every escape the probe knows and fails t for each that
// works. The memory hog runs last, as it kills the app.
func Battery(t *testing.T, tgt Target) {
	b := &battery{tgt: tgt}
	id := b.json(t, "/id")
	b.pid = int(id["pid"].(float64))
	b.boot = id["boot"].(string)

	secretDir := t.TempDir()
	b.secret = filepath.Join(secretDir, "secret")
	b.secretData = "host-secret-" + randHex()
	if err := os.WriteFile(b.secret, []byte(b.secretData), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(secretDir, 0o755) // readable on the host by anyone: only the sandbox may hide it

	t.Run("identity", b.identity)
	t.Run("privileges", b.privileges)
	t.Run("read-only-root", b.readOnlyRoot)
	t.Run("host-files", b.hostFiles)
	t.Run("other-grain-var", b.otherGrain)
	t.Run("var-symlink", b.varSymlink)
	t.Run("var-hardlink", b.varHardlink)
	t.Run("proc-pids", b.procPids)
	t.Run("proc-writes", b.procWrites)
	t.Run("dev-and-sys", b.devAndSys)
	t.Run("network", b.network)
	t.Run("syscalls", b.syscalls)
	t.Run("refused-syscalls", b.refusedSyscalls)
	t.Run("socket-families", b.socketFamilies)
	t.Run("ioctls", b.ioctls)
	t.Run("i386-abi", b.i386)
	t.Run("setuid", b.setuid)
	t.Run("kill-init", b.killInit)
	t.Run("nofile", b.nofile)
	t.Run("fork-bomb", b.forkBomb)
	t.Run("memory-hog", b.memoryHog)
}

type battery struct {
	tgt        Target
	pid        int
	boot       string
	secret     string
	secretData string
}

func randHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (b *battery) get(path string, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return b.tgt.Get(ctx, path)
}

// json GETs an endpoint that must answer 200 with a JSON object.
func (b *battery) json(t *testing.T, path string) map[string]any {
	t.Helper()
	status, body, err := b.get(path, 30*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if status != 200 {
		t.Fatalf("GET %s: status %d: %s", path, status, body)
	}
	m := map[string]any{}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	return m
}

func q(endpoint string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return endpoint + "?" + v.Encode()
}

func errnoOf(m map[string]any) syscall.Errno {
	f, _ := m["errno"].(float64)
	return syscall.Errno(int(f))
}

// expectErrno fails t unless the attempt failed with want.
func expectErrno(t *testing.T, what string, m map[string]any, want syscall.Errno) {
	t.Helper()
	if got := errnoOf(m); got != want {
		t.Errorf("%s: got errno %d (%v, %v), want %d (%v)", what, int(got), got, m["err"], int(want), want)
	}
}

// expectFail fails t if the attempt succeeded.
func expectFail(t *testing.T, what string, m map[string]any) {
	t.Helper()
	if m["ok"] == true {
		t.Errorf("%s succeeded, must fail", what)
	}
}

func (b *battery) identity(t *testing.T) {
	id := b.json(t, "/id")
	if id["hostname"] != "grain" {
		t.Errorf("hostname %v, want grain", id["hostname"])
	}
	if id["uid"] != 0.0 {
		t.Errorf("uid inside %v, want 0", id["uid"])
	}
}

func (b *battery) privileges(t *testing.T) {
	st := b.json(t, "/status")["status"].(map[string]any)
	for _, f := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if st[f] != "0000000000000000" {
			t.Errorf("%s = %v, want none", f, st[f])
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %v, want 1", st["NoNewPrivs"])
	}
	if st["Seccomp"] != "2" {
		t.Errorf("Seccomp = %v, want 2 (filter)", st["Seccomp"])
	}
}

func (b *battery) readOnlyRoot(t *testing.T) {
	expectErrno(t, "create /escape", b.json(t, q("/write", "path", "/escape")), syscall.EROFS)
	// An existing app file may be refused by permissions before the
	// read-only mount is checked (root mode: it belongs to an unmapped uid).
	if m := b.json(t, q("/write", "path", "/bin/suid")); errnoOf(m) != syscall.EROFS && errnoOf(m) != syscall.EACCES {
		t.Errorf("write app file /bin/suid: got %v, want EROFS or EACCES", m["err"])
	}
	expectErrno(t, "create /bin/new", b.json(t, q("/write", "path", "/bin/new")), syscall.EROFS)
	// The places an app may write.
	for _, p := range []string{"/var/probe-ok", "/tmp/probe-ok"} {
		if m := b.json(t, q("/write", "path", p)); m["ok"] != true {
			t.Errorf("write %s: %v, must work", p, m["err"])
		}
	}
}

// expectUnreadable fails t if the file at host path p can be read from
// inside with the host's content, directly or through /proc/1/root.
func (b *battery) expectUnreadable(t *testing.T, p string, content []byte) {
	t.Helper()
	for _, path := range []string{p, "/proc/1/root" + p} {
		m := b.json(t, q("/read", "path", path))
		if m["ok"] == true && (content == nil || bytes.Equal([]byte(m["data"].(string)), content)) {
			t.Errorf("read host file %s from inside as %s", p, path)
		}
	}
}

func (b *battery) hostFiles(t *testing.T) {
	b.expectUnreadable(t, b.secret, []byte(b.secretData))
	for _, p := range append([]string{"/etc/shadow", "/etc/passwd", "/etc/hostname"}, b.tgt.HostFiles...) {
		content, err := os.ReadFile(p)
		if err != nil {
			if len(b.tgt.HostFiles) > 0 && slices.Contains(b.tgt.HostFiles, p) {
				t.Errorf("host file %s given to the battery cannot be read on the host: %v", p, err)
			}
			continue
		}
		b.expectUnreadable(t, p, content)
	}
	for _, d := range []string{"/root", "/home", "/sys/fs/cgroup"} {
		if m := b.json(t, q("/ls", "path", d)); m["ok"] == true {
			t.Errorf("host dir %s is listable inside: %v", d, m["names"])
		}
	}
}

func (b *battery) otherGrain(t *testing.T) {
	if b.tgt.OtherVarFile == "" {
		t.Skip("no other grain given")
	}
	b.expectUnreadable(t, b.tgt.OtherVarFile, []byte(b.tgt.OtherVarContent))
	expectFail(t, "write into the other grain's var", b.json(t, q("/write", "path", b.tgt.OtherVarFile)))
	if got, _ := os.ReadFile(b.tgt.OtherVarFile); string(got) != b.tgt.OtherVarContent {
		t.Errorf("other grain's file changed: %q", got)
	}
}

func (b *battery) varSymlink(t *testing.T) {
	// A link the app makes to a host path resolves inside the sandbox.
	m := b.json(t, q("/symlink", "target", b.secret))
	if m["ok"] == true && m["data"] == b.secretData {
		t.Errorf("symlink in /var to %s reads the host file", b.secret)
	}
	expectErrno(t, "read through /var symlink to a host path", m, syscall.ENOENT)
}

func (b *battery) varHardlink(t *testing.T) {
	// /var and the app tree are different mounts.
	expectErrno(t, "hard link from /var to an app file", b.json(t, "/hardlink"), syscall.EXDEV)
}

func (b *battery) procPids(t *testing.T) {
	m := b.json(t, q("/ls", "path", "/proc"))
	var pids []int
	for _, n := range m["names"].([]any) {
		if pid, err := strconv.Atoi(n.(string)); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	want := []int{1, b.pid}
	if !slices.Equal(pids, want) {
		t.Errorf("/proc lists pids %v, want only the sandbox's init and app %v", pids, want)
	}
}

func (b *battery) procWrites(t *testing.T) {
	for _, p := range []string{"/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/1/mem"} {
		expectFail(t, "write "+p, b.json(t, q("/write", "path", p)))
	}
	// Not dumpable: the app cannot read the init's memory.
	expectFail(t, "read /proc/1/mem", b.json(t, q("/read", "path", "/proc/1/mem")))
	expectFail(t, "read /proc/1/environ", b.json(t, q("/read", "path", "/proc/1/environ")))
}

func (b *battery) devAndSys(t *testing.T) {
	m := b.json(t, q("/ls", "path", "/dev"))
	var names []string
	for _, n := range m["names"].([]any) {
		names = append(names, n.(string))
	}
	want := []string{"fd", "full", "null", "random", "stderr", "stdin", "stdout", "urandom", "zero"}
	if !slices.Equal(names, want) {
		t.Errorf("/dev holds %v, want %v", names, want)
	}
	if m := b.json(t, q("/write", "path", "/dev/null")); m["ok"] != true {
		t.Errorf("write /dev/null: %v", m["err"])
	}
	expectErrno(t, "create /dev/sda", b.json(t, q("/write", "path", "/dev/sda")), syscall.EROFS)
	expectErrno(t, "list /sys", b.json(t, q("/ls", "path", "/sys")), syscall.ENOENT)
}

func (b *battery) network(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	expectErrno(t, "connect to the host's "+ln.Addr().String(), b.json(t, q("/connect", "net", "tcp", "addr", ln.Addr().String())), syscall.ECONNREFUSED)

	abstract := "@erg-battery-" + randHex()
	uln, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer uln.Close()
	go func() {
		if c, err := uln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	expectErrno(t, "connect to the host's abstract socket", b.json(t, q("/connect", "net", "unix", "addr", abstract)), syscall.ECONNREFUSED)
	select {
	case <-accepted:
		t.Error("a host listener accepted a connection from the sandbox")
	case <-time.After(50 * time.Millisecond):
	}
	for _, addr := range []string{"1.1.1.1:80", "10.0.2.2:80", "[2606:4700:4700::1111]:80"} {
		expectErrno(t, "connect to "+addr, b.json(t, q("/connect", "net", "tcp", "addr", addr)), syscall.ENETUNREACH)
	}
	m := b.json(t, "/ifaces")
	if fmt.Sprint(m["names"]) != "[lo]" {
		t.Errorf("interfaces %v, want only lo", m["names"])
	}
}

// denied are the probe's single-syscall attempts and the errno the
// sandbox must answer each with.
var denied = map[string]syscall.Errno{
	"ptrace": syscall.EPERM, "process_vm_readv": syscall.EPERM,
	"mount": syscall.EPERM, "umount": syscall.EPERM, "chroot": syscall.EPERM, "pivot_root": syscall.EPERM,
	"open_tree": syscall.EPERM, "fsopen": syscall.EPERM,
	"unshare_user": syscall.EPERM, "unshare_mount": syscall.EPERM, "unshare_net": syscall.EPERM,
	"setns": syscall.EPERM, "clone_newuser": syscall.EPERM,
	"clone3": syscall.ENOSYS, // so that libc falls back to clone, whose flags the filter sees
	"x32":    syscall.EPERM,
	"keyctl": syscall.EPERM, "add_key": syscall.EPERM, "request_key": syscall.EPERM,
	"bpf": syscall.EPERM, "perf_event_open": syscall.EPERM, "userfaultfd": syscall.EPERM, "io_uring_setup": syscall.EPERM,
	"open_by_handle_at": syscall.EPERM, "name_to_handle_at": syscall.EPERM,
	"personality": syscall.EPERM, "mknod": syscall.EPERM,
	"kexec_load": syscall.EPERM, "init_module": syscall.EPERM, "reboot": syscall.EPERM, "swapon": syscall.EPERM,
	"syslog": syscall.EPERM, "acct": syscall.EPERM, "sethostname": syscall.EPERM,
	"settimeofday": syscall.EPERM, "clock_settime": syscall.EPERM, "iopl": syscall.EPERM, "ioperm": syscall.EPERM,
	"kcmp": syscall.EPERM, "pidfd_getfd": syscall.EPERM, "fanotify_init": syscall.EPERM, "modify_ldt": syscall.EPERM,
	"set_mempolicy": syscall.EPERM, "setgroups": syscall.EPERM,
	"fork": 0, // control: ordinary process creation works
}

func (b *battery) syscalls(t *testing.T) {
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range denied {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		expectErrno(t, name, b.json(t, q("/sys", "name", name)), denied[name])
	}
}

func (b *battery) i386(t *testing.T) {
	m := b.json(t, "/i386")
	if sig, _ := m["signal"].(float64); syscall.Signal(sig) != syscall.SIGSYS {
		t.Errorf("an i386 syscall must kill the process with SIGSYS; it ended: %v", m)
	}
}

func (b *battery) setuid(t *testing.T) {
	m := b.json(t, "/suid")
	if m["setuid_bit"] != true {
		t.Fatalf("the tree's /bin/suid has no setuid bit (%v): the check would prove nothing", m)
	}
	st, _ := m["status"].(map[string]any)
	if st == nil || m["ok"] != true {
		t.Fatalf("running /bin/suid failed: %v", m["err"])
	}
	for _, f := range []string{"CapPrm", "CapEff"} {
		if st[f] != "0000000000000000" {
			t.Errorf("setuid binary gained %s = %v", f, st[f])
		}
	}
	if uids := strings.Fields(st["Uid"].(string)); len(uids) != 4 || slices.ContainsFunc(uids, func(u string) bool { return u != "0" }) {
		t.Errorf("setuid binary changed uids: %v (owner inside: %v)", st["Uid"], m["owner"])
	}
}

func (b *battery) killInit(t *testing.T) {
	b.json(t, "/kill1")
	time.Sleep(20 * time.Millisecond)
	if id := b.json(t, "/id"); id["boot"] != b.boot {
		t.Errorf("the app could kill the sandbox's init (the app restarted)")
	}
}

func (b *battery) nofile(t *testing.T) {
	if b.tgt.NoFile == 0 {
		t.Skip("no open files limit given")
	}
	m := b.json(t, "/nofile")
	expectErrno(t, "open files past the limit", m, syscall.EMFILE)
	if max := uint64(m["max"].(float64)); max != b.tgt.NoFile {
		t.Errorf("RLIMIT_NOFILE hard limit %d, want %d", max, b.tgt.NoFile)
	}
	if n := uint64(m["opened"].(float64)); n >= b.tgt.NoFile {
		t.Errorf("opened %d files, limit %d", n, b.tgt.NoFile)
	}
	if e := syscall.Errno(int(m["raise_errno"].(float64))); e != syscall.EPERM {
		t.Errorf("raising the hard limit: errno %d, want EPERM", int(e))
	}
}

func (b *battery) forkBomb(t *testing.T) {
	if b.tgt.Pids == 0 {
		t.Skip("no pids limit given")
	}
	m := b.json(t, q("/forkbomb", "max", strconv.Itoa(100*b.tgt.Pids)))
	expectErrno(t, "fork bomb", m, syscall.EAGAIN)
	t.Logf("fork bomb stopped after %v processes (pids limit %d)", m["forked"], b.tgt.Pids)
	if n := int(m["forked"].(float64)); n >= b.tgt.Pids {
		t.Errorf("fork bomb made %d processes, limit %d", n, b.tgt.Pids)
	}
	if id := b.json(t, "/id"); id["boot"] != b.boot {
		t.Errorf("the app restarted during the fork bomb")
	}
	hostCmd := "/proc/self/exe"
	if p, err := exec.LookPath("true"); err == nil {
		hostCmd = p
	}
	if err := exec.Command(hostCmd, "-test.run=^$").Run(); err != nil {
		t.Errorf("the host cannot start a process after the fork bomb: %v", err)
	}
}

func (b *battery) memoryHog(t *testing.T) {
	if b.tgt.MemoryBytes == 0 {
		t.Skip("no memory limit given")
	}
	mb := 4 * b.tgt.MemoryBytes >> 20
	status, body, err := b.get(q("/memhog", "mb", strconv.FormatInt(mb, 10)), 60*time.Second)
	if err == nil && status == 200 {
		t.Fatalf("allocating %d MiB under a %d MiB limit worked: %s", mb, b.tgt.MemoryBytes>>20, body)
	}
	t.Logf("memory hog of %d MiB ended: status %d, %v", mb, status, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if b.tgt.Restart != nil {
		if err := b.tgt.Restart(ctx); err != nil {
			t.Fatalf("restart after the memory hog: %v", err)
		}
	}
	for {
		status, body, err := b.tgt.Get(ctx, "/id")
		if err == nil && status == 200 {
			var id map[string]any
			json.Unmarshal(body, &id)
			if id["boot"] == b.boot {
				t.Fatal("the app survived the memory hog")
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the grain did not come back after the memory hog: %d %v", status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
