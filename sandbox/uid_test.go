package sandbox_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// TestPerGrainUID runs two sandboxes as two uids of the runner's range,
// with and without a zygote: each is root inside, its /var is its own uid's
// with mode 0700, and a host process with grain A's uid can read A's
// files but not B's, though nothing else (the dirs above are open to all)
// stands in its way.
func TestPerGrainUID(t *testing.T) {
	if os.Geteuid() != 0 || sandboxtest.InRerun() {
		t.Skip("per-grain uids need a root node")
	}
	for _, z := range []struct {
		name    string
		zygotes int
	}{{"zygote", 1}, {"cold", -1}} {
		t.Run(z.name, func(t *testing.T) {
			r := newRunner(t, sandbox.Config{Zygotes: z.zygotes})
			base, count, ok := r.UIDRange()
			if !ok || count < 2 {
				t.Fatalf("a root runner gives no uid range (%d+%d, %v)", base, count, ok)
			}
			root := sandboxtest.BuildProbeTree(t)
			open, err := os.MkdirTemp("", "erg-uids-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(open) })
			os.Chmod(open, 0o755)
			uids := []uint32{base + 7, base + 8}
			var files []string
			for i, uid := range uids {
				spec := probeSpec(t, "uid-"+string(rune('a'+i)), root)
				spec.Var = filepath.Join(open, string(rune('a'+i)))
				if err := os.Mkdir(spec.Var, 0o755); err != nil {
					t.Fatal(err)
				}
				spec.UID = uid
				sb := start(t, r, spec)
				waitReady(t, sb)
				if got := mustGet(t, sb, "/id"); !strings.Contains(got, `"uid":0`) {
					t.Errorf("inside, the app is %s; want uid 0", got)
				}
				if got := mustGet(t, sb, "/write?path=/var/secret"); !strings.Contains(got, `"ok":true`) {
					t.Fatalf("write /var/secret: %s", got)
				}
				fi, err := os.Stat(spec.Var)
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if st.Uid != uid || st.Gid != uid || fi.Mode().Perm() != 0o700 {
					t.Errorf("var dir is %d:%d mode %v, want %d:%d 0700", st.Uid, st.Gid, fi.Mode().Perm(), uid, uid)
				}
				f := filepath.Join(spec.Var, "secret")
				fi, err = os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid {
					t.Errorf("a file the app wrote belongs to host uid %d, want %d", st.Uid, uid)
				}
				files = append(files, f)
			}
			// The app made its file 0644: only the 0700 var dir and the
			// distinct owners keep grain A's uid out of B's.
			asA := func(path string) error {
				cmd := exec.Command("/bin/cat", path)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uids[0], Gid: uids[0], Groups: []uint32{}}}
				out, err := cmd.CombinedOutput()
				if err != nil {
					return &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: out}
				}
				return nil
			}
			if err := asA(files[0]); err != nil {
				t.Errorf("grain A's uid cannot read its own /var/secret: %v", err)
			}
			err = asA(files[1])
			if err == nil {
				t.Fatal("a host process with grain A's uid read grain B's /var/secret")
			}
			if ee, ok := err.(*exec.ExitError); !ok || !strings.Contains(string(ee.Stderr), "Permission denied") {
				t.Errorf("reading B's file as A: %v, want permission denied", err)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		r := newRunner(t, sandbox.Config{Zygotes: -1})
		base, count, _ := r.UIDRange()
		root := sandboxtest.BuildProbeTree(t)
		for _, uid := range []uint32{base - 1, base + count, 1} {
			spec := probeSpec(t, "uid-bad", root)
			spec.UID = uid
			if sb, err := r.Start(t.Context(), spec); err == nil {
				stop(t, sb)
				t.Errorf("a sandbox started as uid %d, outside the range %d+%d", uid, base, count)
			} else if !strings.Contains(err.Error(), "outside the sandboxes' uid range") {
				t.Errorf("uid %d: %v", uid, err)
			}
		}
	})
}
