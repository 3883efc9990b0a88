package appstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"erg/apppkg"
)

// testKey is fixed so that packages (and fuzz seeds) are reproducible.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// writeApp makes a small app tree and returns its directory.
func writeApp(t testing.TB, key ed25519.PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	manifest := fmt.Sprintf(`{"id":%q,"name":"Test","version":3,"displayVersion":"0.3","command":["/bin/app"],"port":8000,
	"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer","icon":"share/icon.svg","description":"a test app"}`,
		apppkg.AppID(key.Public().(ed25519.PublicKey)))
	files := map[string]string{
		apppkg.ManifestFile: manifest,
		"bin/app":           "#!/bin/sh\necho hi\n",
		"share/icon.svg":    "<svg/>",
		"share/data.txt":    strings.Repeat("data ", 100_000), // several chunks
		"var/.keep":         "",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "bin/app"), 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

func pack(t testing.TB, dir string, key ed25519.PrivateKey, opts apppkg.PackOptions) ([]byte, *apppkg.Package) {
	t.Helper()
	var buf bytes.Buffer
	p, err := apppkg.Pack(context.Background(), dir, key, &buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), p
}

func openBytes(b []byte, lim apppkg.SizeLimits) (*apppkg.Package, error) {
	return apppkg.Open(context.Background(), bytes.NewReader(b), int64(len(b)), lim)
}
