package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"erg/apppkg"
)

// writeFileAtomic writes name through write into a temporary file beside
// it, synced and then renamed into place, so a failure never leaves a
// truncated file under the real name.
func writeFileAtomic(name string, write func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".erg-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// loadAppKey loads the signing key at keyPath, or, if keyPath is empty,
// the one 'erg app keygen' keeps for appID. missing says what to do when
// there is none.
func loadAppKey(keyPath, appID, missing string) (ed25519.PrivateKey, error) {
	if keyPath == "" {
		dir, err := keysDir()
		if err != nil {
			return nil, err
		}
		keyPath = filepath.Join(dir, appID+".key")
	}
	key, err := apppkg.LoadKey(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no signing key for app %s at %s: %s", appID, keyPath, missing)
	}
	return key, err
}
