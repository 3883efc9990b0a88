package apppkg

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.key")
	if err := SaveKey(path, key); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi.Mode(), err)
	}
	if err := SaveKey(path, key); err == nil {
		t.Error("SaveKey overwrote a key")
	}
	got, err := LoadKey(path)
	if err != nil || !got.Equal(key) {
		t.Fatalf("LoadKey: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadKey of a world-readable key: %v", err)
	}

	pub := key.Public().(ed25519.PublicKey)
	id := AppID(pub)
	if len(id) != 53 || id != strings.ToLower(id) || !strings.HasPrefix(id, "b") {
		t.Errorf("app id %q", id)
	}
	back, err := ParseAppID(id)
	if err != nil || !back.Equal(pub) {
		t.Fatalf("ParseAppID(%q) = %v", id, err)
	}
	for _, bad := range []string{"", "notes", id[1:], "B" + id[1:], strings.ToUpper(id), id + "a", id[:52], "b" + strings.Repeat("1", 52)} {
		if _, err := ParseAppID(bad); err == nil {
			t.Errorf("ParseAppID(%q) accepted", bad)
		}
	}
}
