package apppkg

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// An app id is the publisher's ed25519 public key written as a multibase
// base32 string: the letter "b" followed by the 32 key bytes in lowercase
// RFC 4648 base32 without padding (53 characters in all). It is safe in file
// names, URLs and DNS labels, and any multibase decoder reads it.
const appIDPrefix = "b"

var appIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// GenerateKey makes a new app signing key. Its public half is the app id.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate app key: %w", err)
	}
	return priv, nil
}

// AppID returns the app id that names pub.
func AppID(pub ed25519.PublicKey) string {
	return appIDPrefix + strings.ToLower(appIDEncoding.EncodeToString(pub))
}

// ParseAppID returns the public key an app id names.
func ParseAppID(id string) (ed25519.PublicKey, error) {
	rest, ok := strings.CutPrefix(id, appIDPrefix)
	if !ok || rest != strings.ToLower(rest) {
		return nil, fmt.Errorf("app id %q: not a lowercase base32 multibase string (it starts with %q)", id, appIDPrefix)
	}
	b, err := appIDEncoding.DecodeString(strings.ToUpper(rest))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("app id %q: not an ed25519 public key", id)
	}
	return ed25519.PublicKey(b), nil
}

// IsAppID reports whether id is a well-formed app id.
func IsAppID(id string) bool {
	_, err := ParseAppID(id)
	return err == nil
}

const keyPEMType = "PRIVATE KEY"

// SaveKey writes key to path as a PKCS #8 PEM file readable only by its
// owner. It refuses to overwrite an existing file, since losing an app key
// means losing the app id.
func SaveKey(path string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("save key %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: keyPEMType, Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("save key %s: %w", path, err)
	}
	return nil
}

// LoadKey reads a key written by SaveKey. Like ssh, it refuses a key file
// that anyone but its owner can read or write.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load key %s: permissions %04o are too open; run chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != keyPEMType {
		return nil, fmt.Errorf("load key %s: not a PEM %q block", path, keyPEMType)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("load key " + path + ": not an ed25519 key")
	}
	return priv, nil
}
