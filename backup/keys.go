package backup

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/restic/chunker"
	"golang.org/x/crypto/chacha20poly1305"
)

// codeBytes is the recovery code's entropy: 160 bits, far beyond guessing,
// which is why the keys come from it through HKDF alone (no password
// stretching: nobody chooses it).
const codeBytes = 20

var codeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewCode makes a recovery code: 32 base32 letters in groups of four.
func NewCode() string {
	b := make([]byte, codeBytes)
	rand.Read(b)
	s := codeEncoding.EncodeToString(b)
	var groups []string
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	return strings.Join(groups, "-")
}

// ErrBadCode is returned for a recovery code that is not one.
var ErrBadCode = errors.New("that is not a recovery code: it is 32 letters and digits in groups of four, like ABCD-EFGH-…")

func parseCode(code string) ([]byte, error) {
	s := strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ' || r == '\t' || r == '\n' || r == '\r':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, code)
	b, err := codeEncoding.DecodeString(s)
	if err != nil || len(b) != codeBytes {
		return nil, ErrBadCode
	}
	return b, nil
}

// NodeKeys is what a node keeps to make backups without the code: it can
// encrypt to Recipient but not decrypt, name chunks (MAC), cut them
// (Pol), and read and write the snapshot headers that say what a backup
// holds by grain id and date (Index). Restore proves itself to friends as
// RestorePeer's key.
type NodeKeys struct {
	Recipient   []byte      `json:"recipient"` // X25519 public key
	MAC         []byte      `json:"mac"`
	Index       []byte      `json:"index"`
	Pol         chunker.Pol `json:"pol"`
	RestorePub  []byte      `json:"restorePub"` // ed25519
	Fingerprint string      `json:"fingerprint"`
}

// Keys is everything the recovery code gives: the node's keys and the
// private keys only a restore needs.
type Keys struct {
	NodeKeys
	private    *ecdh.PrivateKey
	RestoreKey ed25519.PrivateKey
}

func derive(secret []byte, label string, n int) []byte {
	b, err := hkdf.Key(sha256.New, secret, []byte("erg-backup-v1"), label, n)
	if err != nil {
		panic(err) // only for n beyond 255*32
	}
	return b
}

// DeriveKeys turns a recovery code into the keys.
func DeriveKeys(code string) (*Keys, error) {
	secret, err := parseCode(code)
	if err != nil {
		return nil, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(derive(secret, "x25519", 32))
	if err != nil {
		return nil, err
	}
	pol, err := chunker.DerivePolynomial(&hkdfStream{b: derive(secret, "polynomial", 255*32)})
	if err != nil {
		return nil, err
	}
	restore := ed25519.NewKeyFromSeed(derive(secret, "restore-peer", 32))
	k := &Keys{
		NodeKeys: NodeKeys{
			Recipient:  priv.PublicKey().Bytes(),
			MAC:        derive(secret, "chunk-mac", 32),
			Index:      derive(secret, "index", 32),
			Pol:        pol,
			RestorePub: restore.Public().(ed25519.PublicKey),
		},
		private:    priv,
		RestoreKey: restore,
	}
	k.Fingerprint = k.fingerprint()
	return k, nil
}

// fingerprint names the key set without revealing it: a repository
// records it so a wrong code is told as such, not as damage.
func (k *NodeKeys) fingerprint() string {
	m := hmac.New(sha256.New, k.MAC)
	m.Write([]byte("fingerprint"))
	m.Write(k.Recipient)
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Check says whether the node keys are whole and consistent.
func (k *NodeKeys) Check() error {
	if len(k.Recipient) != 32 || len(k.MAC) != 32 || len(k.Index) != 32 || len(k.RestorePub) != ed25519.PublicKeySize || k.Pol == 0 {
		return errors.New("backup keys are incomplete")
	}
	if k.fingerprint() != k.Fingerprint {
		return errors.New("backup keys do not match their fingerprint")
	}
	return nil
}

// ChunkID names a chunk by a MAC of its plaintext: equal chunks get equal
// names (dedup) but a name says nothing about the bytes to anyone without
// the key.
func (k *NodeKeys) ChunkID(data []byte) string {
	m := hmac.New(sha256.New, k.MAC)
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// hkdfStream reads a fixed buffer, for DerivePolynomial's random source.
type hkdfStream struct{ b []byte }

func (s *hkdfStream) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// A run key encrypts the chunks and trees of one backup run. It is
// stored in the repository wrapped to the recipient (X25519, ephemeral
// sender key), so only the code's private key unwraps it.
type runKey struct {
	id  string // hex, 16 bytes
	key []byte
}

func newRunKey() runKey {
	id := make([]byte, 16)
	rand.Read(id)
	key := make([]byte, chacha20poly1305.KeySize)
	rand.Read(key)
	return runKey{id: hex.EncodeToString(id), key: key}
}

func wrapLabel(eph, recip []byte) []byte {
	return append(append([]byte("erg-backup-wrap"), eph...), recip...)
}

// wrap seals the run key to the node's recipient.
func (k *NodeKeys) wrap(rk runKey) ([]byte, error) {
	recip, err := ecdh.X25519().NewPublicKey(k.Recipient)
	if err != nil {
		return nil, err
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	shared, err := eph.ECDH(recip)
	if err != nil {
		return nil, err
	}
	kek, err := hkdf.Key(sha256.New, shared, nil, string(wrapLabel(eph.PublicKey().Bytes(), k.Recipient)), 32)
	if err != nil {
		return nil, err
	}
	sealed, err := seal(kek, []byte("key/"+rk.id), rk.key)
	if err != nil {
		return nil, err
	}
	return append(eph.PublicKey().Bytes(), sealed...), nil
}

// unwrap opens a wrapped run key with the code's private key.
func (k *Keys) unwrap(id string, b []byte) (runKey, error) {
	if len(b) < 32 {
		return runKey{}, errors.New("wrapped key is truncated")
	}
	eph, err := ecdh.X25519().NewPublicKey(b[:32])
	if err != nil {
		return runKey{}, err
	}
	shared, err := k.private.ECDH(eph)
	if err != nil {
		return runKey{}, err
	}
	kek, err := hkdf.Key(sha256.New, shared, nil, string(wrapLabel(b[:32], k.Recipient)), 32)
	if err != nil {
		return runKey{}, err
	}
	key, err := open(kek, []byte("key/"+id), b[32:])
	if err != nil {
		return runKey{}, fmt.Errorf("key %s: %w", id, err)
	}
	return runKey{id: id, key: key}, nil
}

// ErrDamaged is wrapped by every failure to authenticate stored bytes.
var ErrDamaged = errors.New("damaged or tampered with")

// seal encrypts and authenticates plain with XChaCha20-Poly1305, binding
// it to ad (an object's kind and name, so objects cannot be swapped).
func seal(key, ad, plain []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	rand.Read(out)
	return aead.Seal(out, out, plain, ad), nil
}

func open(key, ad, sealed []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: truncated", ErrDamaged)
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], ad)
	if err != nil {
		return nil, ErrDamaged
	}
	return plain, nil
}
