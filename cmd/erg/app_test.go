package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes erg in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	code := 0
	if err := root.Execute(); err != nil {
		fmt.Fprintln(&errOut, "erg:", err)
		code = 1
	}
	return out.String(), errOut.String(), code
}

func TestAppKeygenPackVerify(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	out, _, code := run(t, "app", "keygen", "--json")
	if code != 0 {
		t.Fatal("keygen failed")
	}
	var kg struct{ AppID, Key string }
	if err := json.Unmarshal([]byte(out), &kg); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(kg.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v", kg.Key, fi, err)
	}

	tree := filepath.Join(t.TempDir(), "hello")
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "bin", "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	manifest := fmt.Sprintf(`{"id":%q,"name":"Hello","version":3,"displayVersion":"0.3","command":["/bin/hello"],"port":8000,
		"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`, kg.AppID)
	os.WriteFile(filepath.Join(tree, "erg.json"), []byte(manifest), 0o644)

	pkgFile := filepath.Join(t.TempDir(), "hello.erg")
	if _, errOut, code := run(t, "app", "pack", tree, "-o", pkgFile); code != 0 {
		t.Fatalf("pack: %s", errOut)
	}
	out, errOut, code := run(t, "app", "verify", pkgFile, "--json")
	if code != 0 {
		t.Fatalf("verify: %s", errOut)
	}
	var info map[string]any
	json.Unmarshal([]byte(out), &info)
	if info["appId"] != kg.AppID || info["version"] != float64(3) || info["signatureValid"] != true || !strings.HasPrefix(info["package"].(string), "baf") {
		t.Errorf("verify --json = %v", info)
	}

	data, _ := os.ReadFile(pkgFile)
	data[len(data)/2] ^= 0xff
	os.WriteFile(pkgFile, data, 0o644)
	if _, errOut, code := run(t, "app", "verify", pkgFile); code == 0 || !strings.Contains(errOut, "not a valid package") {
		t.Errorf("a tampered package verified: %q", errOut)
	}

	os.WriteFile(filepath.Join(tree, "erg.json"), []byte(strings.Replace(manifest, kg.AppID, "b"+strings.Repeat("a", 52), 1)), 0o644)
	if _, errOut, code := run(t, "app", "pack", tree, "-o", pkgFile+"2"); code == 0 || !strings.Contains(errOut, "keygen") {
		t.Errorf("pack without the app's key says %q", errOut)
	}
	if _, err := os.Stat(pkgFile + "2"); !os.IsNotExist(err) {
		t.Error("a failed pack left a file behind")
	}
}
