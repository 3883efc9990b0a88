// Package sandboxtest holds what tests of sandboxed grains share: the
// probe app and its tree, the escape battery every sandbox mode must pass,
// and the setup for running a test as an unprivileged user.
package sandboxtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// ProbeEnv, when set, names a prebuilt probe binary for BuildProbeTree to
// use instead of building one (a test re-run as another user sets it, as
// that user may not be able to run the go tool).
const ProbeEnv = "ERG_SANDBOXTEST_PROBE"

const probePkg = "erg/sandbox/sandboxtest/probe"

// ProbeArgs are the Spec.Args that run the probe in a tree from
// BuildProbeTree. It listens on 127.0.0.1:$PORT.
var ProbeArgs = []string{"/bin/probe"}

// BuildProbeTree returns a new app tree holding the probe at /bin/probe, a
// setuid copy of it at /bin/suid, and the empty mount points dev, proc, tmp
// and var. The tree (and its parents) is readable by everyone, as a root
// node's sandboxes run as an unprivileged uid. It is removed after the test.
func BuildProbeTree(t testing.TB) (root string) {
	t.Helper()
	probe, err := ProbeBinary()
	if err != nil {
		t.Fatal(err)
	}
	root, err = os.MkdirTemp("", "erg-probe-tree-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bin", "dev", "proc", "tmp", "var"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{"bin/probe", 0o755}, {"bin/suid", 0o755 | os.ModeSetuid}} {
		p := filepath.Join(root, f.name)
		if err := copyFile(probe, p); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// VarDir returns a new empty dir for a sandbox's /var, removed after the
// test.
func VarDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "erg-var-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// ProbeBinary returns the path of a static probe binary, building it with
// the go tool (CGO_ENABLED=0) unless ProbeEnv names one. Builds are cached
// in the temp dir, keyed by the probe's source.
func ProbeBinary() (string, error) {
	if p := os.Getenv(ProbeEnv); p != "" {
		return p, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building the probe needs the go tool on PATH: %w", err)
	}
	out, err := exec.Command(goTool, "list", "-f", "{{.Dir}}", probePkg).Output()
	if err != nil {
		return "", fmt.Errorf("find probe source (run from inside the erg module): %w", err)
	}
	dir := strings.TrimSpace(string(out))
	h := sha256.New()
	io.WriteString(h, runtime.Version())
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	cache := filepath.Join(os.TempDir(), "erg-probe-"+hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(cache, "probe")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	os.Chmod(cache, 0o755)
	tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
	cmd := exec.Command(goTool, "build", "-o", tmp, probePkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build probe: %v\n%s", err, out)
	}
	return bin, os.Rename(tmp, bin)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
