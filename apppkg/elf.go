package apppkg

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// hostLibraryDirs are searched, in order, for a shared library an ELF
// binary needs after its own DT_RPATH or DT_RUNPATH, like the dynamic
// loader's default path on x86-64 Debian-like and Fedora-like systems.
var hostLibraryDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// CollectELFDeps reads the ELF headers of binaries (paths inside the app
// tree at root, such as "/bin/app") and returns, sorted, the absolute host
// paths of everything the dynamic loader will need to start them that the
// tree does not already hold: the loader itself (PT_INTERP) and every
// shared library named by DT_NEEDED, recursively, found through
// DT_RPATH/DT_RUNPATH (with $ORIGIN) and then the host's standard library
// directories (see hostLibraryDirs); a copy already in the tree wins. Copy them
// into the tree with CopyHostFiles. It reads headers with debug/elf and never
// runs the binary or ldd. A binary that is not ELF, or is static, adds nothing.
func CollectELFDeps(root string, binaries []string) ([]string, error) {
	c := &elfCollector{root: root, seen: map[string]bool{}, host: map[string]bool{}}
	for _, b := range binaries {
		p := path.Clean("/" + b)
		f, err := elf.Open(c.treePath(p))
		if err != nil {
			var fe *elf.FormatError
			if errors.As(err, &fe) || errors.Is(err, io.EOF) {
				continue // a script or data file needs no libraries
			}
			return nil, fmt.Errorf("collect libraries of %s: %w", b, err)
		}
		err = c.object(f, p, true, nil)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("collect libraries of %s: %w", b, err)
		}
	}
	out := make([]string, 0, len(c.host))
	for p := range c.host {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

type elfCollector struct {
	root string
	seen map[string]bool // objects visited, by tree-or-host key
	host map[string]bool // host paths to copy
}

func (c *elfCollector) treePath(p string) string {
	return filepath.Join(c.root, filepath.FromSlash(p))
}

// object visits one loaded ELF object at p (in the tree if inTree, else on
// the host). inherited holds the DT_RPATH of the objects that loaded it,
// which glibc also searches when the object has no DT_RUNPATH.
func (c *elfCollector) object(f *elf.File, p string, inTree bool, inherited []string) error {
	key := fmt.Sprint(inTree, p)
	if c.seen[key] {
		return nil
	}
	c.seen[key] = true
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(prog.Open(), 4096))
		if err != nil {
			return fmt.Errorf("%s: PT_INTERP: %w", p, err)
		}
		interp := path.Clean(strings.TrimRight(string(b), "\x00"))
		if !path.IsAbs(interp) {
			return fmt.Errorf("%s: the interpreter %q is not an absolute path", p, interp)
		}
		if _, err := os.Stat(c.treePath(interp)); err != nil {
			if _, err := os.Stat(interp); err != nil {
				return fmt.Errorf("%s: its interpreter %s is not on this host", p, interp)
			}
			c.host[interp] = true
		}
	}
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil || len(needed) == 0 {
		return nil // static, or no dynamic section
	}
	origin := path.Dir(p)
	expand := func(tag elf.DynTag) []string {
		vals, _ := f.DynString(tag)
		var dirs []string
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
				if path.IsAbs(d) {
					dirs = append(dirs, path.Clean(d))
				}
			}
		}
		return dirs
	}
	runpath, rpath := expand(elf.DT_RUNPATH), expand(elf.DT_RPATH)
	var search []string
	if len(runpath) == 0 {
		inherited = append(slices.Clone(inherited), rpath...)
		search = inherited
	} else {
		inherited = nil
		search = runpath
	}
	search = append(slices.Clone(search), hostLibraryDirs...)

	for _, name := range needed {
		lf, lp, lInTree, err := c.find(name, search, f)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", p, name, err)
		}
		if !lInTree {
			c.host[lp] = true
		}
		err = c.object(lf, lp, lInTree, inherited)
		lf.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// find looks a library up as the loader would, preferring a copy already in
// the tree, and skips files built for another machine or class.
func (c *elfCollector) find(name string, dirs []string, from *elf.File) (*elf.File, string, bool, error) {
	try := func(p string, inTree bool) *elf.File {
		fp := p
		if inTree {
			fp = c.treePath(p)
		}
		f, err := elf.Open(fp)
		if err != nil {
			return nil
		}
		if f.Class != from.Class || f.Machine != from.Machine {
			f.Close()
			return nil
		}
		return f
	}
	if strings.Contains(name, "/") {
		dirs = []string{""}
	}
	for _, d := range dirs {
		p := path.Clean(path.Join("/", d, name))
		if f := try(p, true); f != nil {
			return f, p, true, nil
		}
		if f := try(p, false); f != nil {
			return f, p, false, nil
		}
	}
	return nil, "", false, fmt.Errorf("not found in %s", strings.Join(dirs, ":"))
}

// CopyHostFiles copies each absolute host path into the tree at the same
// path. Symlinks are followed, so the tree gets a plain file where the
// loader will look, whatever chain of links led to it on the host; the
// executable bit is kept. Files already in the tree are left alone.
func CopyHostFiles(tree string, hostPaths []string) error {
	for _, hp := range hostPaths {
		if !path.IsAbs(hp) || path.Clean(hp) != hp {
			return fmt.Errorf("copy %q: not a clean absolute path", hp)
		}
		dst := filepath.Join(tree, filepath.FromSlash(hp))
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		if err := copyFile(hp, dst); err != nil {
			return fmt.Errorf("copy %s into the package: %w", hp, err)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src) // follows symlinks
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	mode := fs.FileMode(0o644)
	if fi.Mode()&0o111 != 0 {
		mode = 0o755
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}
