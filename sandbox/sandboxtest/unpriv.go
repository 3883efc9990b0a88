package sandboxtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// UnprivilegedUserName is the system user UnprivilegedUser creates.
const UnprivilegedUserName = "ergtest"

// innerEnv marks a test binary re-run by RerunAs.
const innerEnv = "ERG_SANDBOXTEST_INNER"

// InRerun reports whether this process is a test binary re-run by RerunAs.
func InRerun() bool { return os.Getenv(innerEnv) == "1" }

// UnprivilegedUser makes sure the system user ergtest exists (no
// supplementary groups) and that it is delegated the cgroup v1 memory and
// pids hierarchies the way a root admin would: <hierarchy>/<own cgroup>/erg,
// owned by the user with its cgroup.procs and tasks. It skips the test
// unless run as root.
func UnprivilegedUser(t testing.TB) (uid, gid uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating an unprivileged test user needs root")
	}
	u, err := user.Lookup(UnprivilegedUserName)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", UnprivilegedUserName).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			t.Fatalf("useradd %s: %v: %s", UnprivilegedUserName, err, out)
		}
		if u, err = user.Lookup(UnprivilegedUserName); err != nil {
			t.Fatal(err)
		}
	}
	u64, _ := strconv.ParseUint(u.Uid, 10, 32)
	g64, _ := strconv.ParseUint(u.Gid, 10, 32)
	uid, gid = uint32(u64), uint32(g64)
	if groups, err := u.GroupIds(); err == nil && len(groups) > 1 {
		t.Fatalf("user %s has supplementary groups %v; the sandbox tests need a user without", UnprivilegedUserName, groups)
	}
	if isCgroup2() {
		delegatedV2 = true // RerunAs delegates a fresh group to each re-run
	} else if err := delegateV1(uid, gid); err != nil {
		t.Logf("no cgroup v1 delegation (sandboxes of %s will run without limits): %v", UnprivilegedUserName, err)
	}
	return uid, gid
}

// delegatedV2 says /sys/fs/cgroup is cgroup v2: RerunAs then starts each
// re-run in a group delegated to the user.
var delegatedV2 bool

func isCgroup2() bool {
	var st syscall.Statfs_t
	return syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 // CGROUP2_SUPER_MAGIC
}

// delegateV2 delegates a new cgroup v2 group to uid the way systemd does
// for Delegate=yes: root makes it and gives the user it and its
// cgroup.procs, cgroup.subtree_control and cgroup.threads. Each re-run
// gets its own: a node inside turns on controllers for its group's
// children, after which no process may be placed in the group itself.
// The cleanup removes it and what the re-run left in it.
func delegateV2(t testing.TB, uid, gid uint32) string {
	t.Helper()
	dir, err := os.MkdirTemp("/sys/fs/cgroup", "erg-delegated-"+UnprivilegedUserName+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroupTree(dir) })
	for _, f := range []string{"", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"} {
		if err := os.Chown(filepath.Join(dir, f), int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// removeCgroupTree removes an empty cgroup and the groups below it.
func removeCgroupTree(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	os.Remove(dir)
}

func delegateV1(uid, gid uint32) error {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	own := map[string]string{}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 {
			for _, c := range strings.Split(parts[1], ",") {
				own[c] = parts[2]
			}
		}
	}
	for _, ctl := range []string{"memory", "pids", "cpu", "blkio"} {
		p, ok := own[ctl]
		if !ok {
			if ctl == "cpu" || ctl == "blkio" {
				continue // optional: CPU and I/O limits are then off
			}
			return fmt.Errorf("no %s cgroup v1 hierarchy", ctl)
		}
		dir := filepath.Join("/sys/fs/cgroup", ctl, p, "erg")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range []string{"", "cgroup.procs", "tasks"} {
			if err := os.Chown(filepath.Join(dir, f), int(uid), int(gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// RerunAs runs the current test again, in a copy of the test binary, as
// uid:gid with no supplementary groups, and fails t if it fails there. The
// re-run sees InRerun() true; it gets a private TMPDIR and HOME, and the
// probe prebuilt (ProbeEnv), as it may not be able to run the go tool.
func RerunAs(t *testing.T, uid, gid uint32, env ...string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	probe, err := ProbeBinary()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.MkdirTemp("", "erg-rerun-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	home, err := os.MkdirTemp("", "erg-rerun-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := errors.Join(os.Chmod(bin, 0o755), os.Chown(home, int(uid), int(gid))); err != nil {
		t.Fatal(err)
	}
	testBin := filepath.Join(bin, filepath.Base(exe))
	if err := errors.Join(copyFile(exe, testBin), copyFile(probe, filepath.Join(bin, "probe"))); err != nil {
		t.Fatal(err)
	}
	var pattern []string
	for _, part := range strings.Split(t.Name(), "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	args := []string{"-test.run=" + strings.Join(pattern, "/"), "-test.v", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command(testBin, args...)
	cmd.Dir = home
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TMPDIR=" + home,
		innerEnv + "=1",
		ProbeEnv + "=" + filepath.Join(bin, "probe"),
	}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	if delegatedV2 {
		// Born in the delegated group: the user could not move itself
		// there from a group it does not own.
		fd, err := unix.Open(delegateV2(t, uid, gid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	out, err := cmd.CombinedOutput()
	t.Logf("re-run as uid %d:\n%s", uid, out)
	if err != nil {
		t.Fatalf("test failed as uid %d: %v", uid, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the re-run as uid %d did not run %s", uid, t.Name())
	}
}
