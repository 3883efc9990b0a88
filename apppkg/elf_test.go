package apppkg

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

const helloC = `#include <stdio.h>
#include <math.h>
int main(int argc, char **argv) { printf("hello from C %.0f\n", sqrt(argc * 16.0)); return 0; }
`

// TestNativeCProgram builds a dynamically linked C program, collects its
// loader and libraries from the host by reading ELF headers, packs the tree,
// unpacks it, and runs the program chrooted into the unpacked package.
func TestNativeCProgram(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc is not installed, so there is no C program to package")
	}
	key := testKey(3)
	tree := t.TempDir()
	src := filepath.Join(t.TempDir(), "hello.c")
	if err := os.WriteFile(src, []byte(helloC), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-O1", "-o", filepath.Join(tree, "bin/hello"), src, "-lm").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	m := strings.Replace(manifestFor(key, ""), `"/bin/app"`, `"/bin/hello"`, 1)
	if err := os.WriteFile(filepath.Join(tree, ManifestFile), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}

	deps, err := CollectELFDeps(tree, []string{"/bin/hello", ManifestFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deps: %v", deps)
	var libc, libm, interp bool
	for _, d := range deps {
		base := filepath.Base(d)
		libc = libc || strings.HasPrefix(base, "libc.so")
		libm = libm || strings.HasPrefix(base, "libm.so")
		interp = interp || strings.HasPrefix(base, "ld-linux")
	}
	if !libc || !libm || !interp {
		t.Fatalf("deps %v lack libc, libm or the loader", deps)
	}
	if err := CopyHostFiles(tree, deps); err != nil {
		t.Fatal(err)
	}
	// Everything is in the tree now, so nothing more is needed from the host.
	if again, err := CollectELFDeps(tree, []string{"/bin/hello"}); err != nil || len(again) != 0 {
		t.Fatalf("after copying, still needs %v (%v)", again, err)
	}

	var buf bytes.Buffer
	if _, err := Pack(context.Background(), tree, key, &buf, PackOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := openBytes(buf.Bytes(), SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "pkg")
	if err := Unpack(context.Background(), p, dest, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	defer RemoveTree(dest)

	if os.Getuid() != 0 {
		t.Skip("chroot needs root; the package was built and unpacked but not run")
	}
	cmd := exec.Command("/bin/hello", "x")
	cmd.Dir = "/"
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dest}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run in chroot: %v\n%s", err, out)
	}
	if got := string(out); got != "hello from C 6\n" {
		t.Fatalf("output %q", got)
	}
}

func TestCollectELFDepsOfPython(t *testing.T) {
	py, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Skip("no /usr/bin/python3 on this host")
	}
	deps, err := CollectELFDeps("/", []string{py})
	if err != nil {
		t.Fatal(err)
	}
	// The host root holds everything already, so nothing is reported.
	if len(deps) != 0 {
		t.Fatalf("deps inside / reported as missing: %v", deps)
	}
	tree := t.TempDir()
	if err := CopyHostFiles(tree, []string{py}); err != nil {
		t.Fatal(err)
	}
	deps, err = CollectELFDeps(tree, []string{py})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(deps, func(d string) bool { return strings.Contains(d, "libc.so") }) {
		t.Fatalf("python needs no libc? %v", deps)
	}
	if err := CopyHostFiles(tree, []string{"relative"}); err == nil {
		t.Error("copied a relative path")
	}
}

func TestCollectELFDepsMissingLibrary(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc is not installed")
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "libgone.so")
	src := filepath.Join(dir, "x.c")
	os.WriteFile(src, []byte("int gone(void){return 1;}\n"), 0o644)
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	main := filepath.Join(dir, "m.c")
	os.WriteFile(main, []byte("int gone(void); int main(void){return gone();}\n"), 0o644)
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	os.MkdirAll(filepath.Join(tree, "lib"), 0o755)
	if out, err := exec.Command(gcc, "-o", filepath.Join(tree, "bin/m"), main, "-L"+dir, "-lgone", "-Wl,-rpath,$ORIGIN/../lib").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	if _, err := CollectELFDeps(tree, []string{"/bin/m"}); err == nil || !strings.Contains(err.Error(), "libgone.so") {
		t.Fatalf("missing library: %v", err)
	}
	// Found through $ORIGIN inside the tree, it is not a host dependency.
	data, _ := os.ReadFile(lib)
	os.WriteFile(filepath.Join(tree, "lib/libgone.so"), data, 0o755)
	deps, err := CollectELFDeps(tree, []string{"/bin/m"})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(deps, func(d string) bool { return strings.Contains(d, "libgone") }) {
		t.Fatalf("tree library reported as host dep: %v", deps)
	}
}
