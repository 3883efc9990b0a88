package apppkg

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// smallApp is a minimal tree, so that fuzzing mutates a small package.
func smallApp(t testing.TB) []byte {
	t.Helper()
	key := testKey(1)
	dir := t.TempDir()
	for name, content := range map[string]string{
		ManifestFile: manifestFor(key, ""),
		"bin/app":    "#!/bin/sh\n",
		"a.txt":      "hello",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	b, _ := pack(t, dir, key, PackOptions{})
	return b
}

// FuzzOpen feeds arbitrary bytes to the package reader; whatever it
// accepts must also unpack.
func FuzzOpen(f *testing.F) {
	good := smallApp(f)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(good[:100])
	lim := SizeLimits{MaxPackage: 1 << 20, MaxFile: 1 << 20, MaxEntries: 1000}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Open(context.Background(), bytes.NewReader(data), int64(len(data)), lim)
		if err != nil {
			return
		}
		if p.Manifest == nil || p.AppID != p.Manifest.ID {
			t.Fatalf("accepted %+v", p)
		}
		parent := t.TempDir()
		dest := filepath.Join(parent, "pkg")
		if err := Unpack(context.Background(), p, dest, UnpackOptions{}); err != nil {
			t.Fatalf("opened but did not unpack: %v", err)
		}
		RemoveTree(dest)
	})
}

// FuzzParseManifest checks that the manifest parser never panics and that
// whatever it accepts validates.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(manifestFor(testKey(1), `,"icon":"i.png","include":["/usr/bin/x"],"limits":{"memoryMB":1}`)))
	f.Add([]byte(`{"id":"notes"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted but invalid: %v", err)
		}
		if _, ok := m.Role(m.OwnerRole); !ok {
			t.Fatal("accepted without the owner role")
		}
	})
}
