package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAppDevRefusesBadInput checks that what is wrong with the app dir is
// said before anything runs, and leaves the dir as it was.
func TestAppDevRefusesBadInput(t *testing.T) {
	manifest := `{"id":"x","name":"X","version":1,"command":["/usr/bin/python3","/app.py"],"port":8000,
		"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`
	for _, c := range []struct {
		name, manifest, list, role, want string
	}{
		{"no manifest", "", "", "", "read manifest"},
		{"bad manifest", `{"id":"x"}`, "", "", "manifest field"},
		{"unknown role", manifest, "", "editor", `no role "editor"`},
		{"bad list", manifest, "/usr/bin\nusr/lib\n", "", `:2: "usr/lib" is not a clean absolute path`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.manifest != "" {
				os.WriteFile(filepath.Join(dir, "erg.json"), []byte(c.manifest), 0o644)
			}
			if c.list != "" {
				os.WriteFile(filepath.Join(dir, FilesList), []byte(c.list), 0o644)
			}
			var out bytes.Buffer
			err := runAppDev(context.Background(), dir, appDevOptions{listen: "127.0.0.1:0", user: "owner", role: c.role}, &out, &out)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, ".erg-dev")); err == nil {
				t.Error("a refused run made .erg-dev")
			}
			if c.list != "" {
				if b, _ := os.ReadFile(filepath.Join(dir, FilesList)); string(b) != c.list {
					t.Errorf("the list changed to %q", b)
				}
			}
		})
	}
}

func TestMergeLists(t *testing.T) {
	got, added := mergeLists([]string{"/usr/b", "/etc/a"}, []string{"/usr/b", "/usr/a"})
	if strings.Join(got, " ") != "/etc/a /usr/a /usr/b" || added != 1 {
		t.Errorf("merge = %v, %d new", got, added)
	}
}

func TestRecorderKeepsHostDirFiles(t *testing.T) {
	r := &recorder{dirs: []string{"/usr", "/etc"}, root: t.TempDir(), seen: map[string]bool{}, checked: map[string]bool{}}
	for _, p := range []string{"/usr", "/usr/bin", "/usrx", "/var/notes", "/etc/passwd", "/etc/shadow", "/usr/no-such-file-here", "/usr\n/etc/passwd"} {
		r.add(p)
	}
	got := strings.Join(r.existing(), " ")
	// /etc/shadow exists but not everyone may read it: never packed.
	if got != "/etc/passwd /usr /usr/bin" {
		t.Errorf("recorded %q", got)
	}
}

// TestRecorderFollowsScriptInterpreters: a script the app runs (here one
// in the app's own tree, as npm is in Etherpad's) names its interpreter on
// its #! line, which the kernel starts without a call the tracer sees; the
// recorder adds it, and for "#!/usr/bin/env NAME" the NAME a grain's PATH
// finds. A file that is not executable names nothing.
func TestRecorderFollowsScriptInterpreters(t *testing.T) {
	if _, err := os.Stat("/usr/bin/env"); err != nil {
		t.Skip("no /usr/bin/env on this host")
	}
	sh := ""
	for _, p := range []string{"/usr/local/bin/sh", "/usr/bin/sh", "/bin/sh"} {
		if _, err := os.Stat(p); err == nil {
			sh = p
			break
		}
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "app", "bin"), 0o755)
	os.WriteFile(filepath.Join(root, "app", "bin", "tool"), []byte("#!/usr/bin/env sh\necho hi\n"), 0o755)
	os.WriteFile(filepath.Join(root, "app", "bin", "notes"), []byte("#!/usr/bin/perl\n"), 0o644)
	r := &recorder{dirs: []string{"/usr", "/bin"}, root: root, seen: map[string]bool{}, checked: map[string]bool{}}
	r.add("/app/bin/tool")
	r.add("/app/bin/notes")
	r.add("/app/bin/tool") // seen once is enough
	got := r.existing()
	if !slices.Contains(got, "/usr/bin/env") || sh != "" && !slices.Contains(got, sh) || slices.Contains(got, "/usr/bin/perl") {
		t.Errorf("recorded %q, want /usr/bin/env and %s", got, sh)
	}
}
