package fed

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// Protocol IDs of the streams between friends' nodes.
const (
	// CapnpProtocol carries Cap'n Proto RPC; only friends may open it.
	CapnpProtocol = "/erg/capnp/1"
	// FriendProtocol carries one friend request: the invite's secret and
	// the asking node's name, answered with the inviting node's name.
	FriendProtocol = "/erg/friend/1"
)

const (
	invitePrefix = "erg-friend:"
	secretSize   = 32
	maxNameLen   = 64
	maxAddrs     = 16
	maxAddrLen   = 256
	maxFrame     = 8 << 10
)

// Invite is what one node's owner gives another's to become friends: how to
// reach the inviting node, and a one-time secret.
type Invite struct {
	Peer   string   `json:"peer"`
	Addrs  []string `json:"addrs"`
	Name   string   `json:"name"`
	Secret []byte   `json:"secret"`
}

// String is the invite as a code to paste: "erg-friend:" and base64url JSON.
func (inv Invite) String() string {
	b, _ := json.Marshal(inv)
	return invitePrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseInvite reads an invite code, refusing anything malformed.
func ParseInvite(code string) (Invite, error) {
	var inv Invite
	code = strings.TrimSpace(code)
	if !strings.HasPrefix(code, invitePrefix) || len(code) > 8<<10 {
		return inv, errors.New("not an erg friend invite (it starts with " + invitePrefix + ")")
	}
	b, err := base64.RawURLEncoding.DecodeString(code[len(invitePrefix):])
	if err != nil {
		return inv, errors.New("the invite code is damaged: copy it again, whole")
	}
	if err := json.Unmarshal(b, &inv); err != nil {
		return inv, errors.New("the invite code is damaged: copy it again, whole")
	}
	if err := inv.validate(); err != nil {
		return Invite{}, err
	}
	return inv, nil
}

func (inv Invite) validate() error {
	switch {
	case inv.Peer == "" || len(inv.Peer) > 128:
		return errors.New("the invite names no node")
	case len(inv.Secret) != secretSize:
		return errors.New("the invite's secret is not 32 bytes")
	case len(inv.Addrs) > maxAddrs:
		return fmt.Errorf("the invite lists more than %d addresses", maxAddrs)
	}
	for _, a := range inv.Addrs {
		if len(a) > maxAddrLen || !strings.HasPrefix(a, "/") {
			return fmt.Errorf("the invite's address %.40q is not a multiaddr", a)
		}
	}
	return CheckNodeName(inv.Name)
}

// CheckNodeName refuses node names that could pass for something else in
// "user@node": empty, too long, or holding '@', spaces or control runes.
func CheckNodeName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("a node name is 1 to %d bytes", maxNameLen)
	}
	for _, r := range name {
		if r == '@' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("node name %q: no '@', spaces or control characters", name)
		}
	}
	return nil
}

// FriendRequest is what the invited node sends on FriendProtocol.
type FriendRequest struct {
	Secret []byte   `json:"secret"`
	Name   string   `json:"name"`
	Addrs  []string `json:"addrs,omitempty"`
}

// FriendReply answers a FriendRequest: the inviting node's name, or why not.
type FriendReply struct {
	Name  string `json:"name,omitempty"`
	Error string `json:"error,omitempty"`
}

// WriteFrame writes v as one length-prefixed JSON frame.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("frame of %d bytes is over %d", len(b), maxFrame)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(append(hdr[:], b...)); err != nil {
		return err
	}
	return nil
}

// ReadFrame reads one frame written by WriteFrame into v, refusing frames
// over 8 KiB and JSON with unknown fields.
func ReadFrame(r *bufio.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("frame of %d bytes is over %d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed frame: %w", err)
	}
	return nil
}
