package backup

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"erg/p2p"
)

// Protocol carries one request for a repository a friend keeps: put, get,
// list or delete one object, the space offered, or the peer a restore
// will come from. The friend answers only the node it offered space to,
// and (read-only) that node's restore peer.
const Protocol protocol.ID = "/erg/backup/1"

const (
	maxRequest = 4 << 10
	maxObject  = 64 << 20 // a snapshot of a very large tree; chunks are at most 8 MiB
	maxReply   = 64 << 20 // a listing of a large repository
	streamIdle = 30 * time.Second
)

type request struct {
	Op          string `json:"op"` // put, get, list, delete, space, hello
	Kind        string `json:"kind,omitempty"`
	Name        string `json:"name,omitempty"`
	Size        int64  `json:"size,omitempty"`
	RestorePeer string `json:"restorePeer,omitempty"`
}

type reply struct {
	Error   string   `json:"error,omitempty"`
	Code    string   `json:"code,omitempty"` // quota, not-stored, no-offer, forbidden, invalid
	Objects []Object `json:"objects,omitempty"`
	Size    int64    `json:"size,omitempty"` // bytes of the object that follow
	Used    int64    `json:"used,omitempty"`
	Quota   int64    `json:"quota,omitempty"`
}

// ErrOverQuota is returned when a friend refuses a put for lack of the
// space they offered.
var ErrOverQuota = errors.New("over the space offered")

// ErrNoOffer is returned by a friend who keeps no backups for this node.
var ErrNoOffer = errors.New("no space offered")

// Remote is a repository a friend's node keeps for this one, reached over
// the friends' libp2p link.
type Remote struct {
	host    *p2p.Host
	peer    peer.ID
	name    string
	connect func(context.Context, peer.ID) error
}

// NewRemote is the repository peer keeps for this node; connect, if set,
// makes sure the host is connected first (friends.Service.Connect).
func NewRemote(h *p2p.Host, p peer.ID, name string, connect func(context.Context, peer.ID) error) *Remote {
	return &Remote{host: h, peer: p, name: name, connect: connect}
}

func (r *Remote) call(ctx context.Context, req request, body []byte) (reply, []byte, error) {
	if r.connect != nil {
		if err := r.connect(ctx, r.peer); err != nil {
			return reply{}, nil, fmt.Errorf("%s is not reachable: %w", r.name, err)
		}
	}
	st, err := r.host.NewStream(ctx, r.peer, Protocol, streamIdle)
	if err != nil {
		return reply{}, nil, fmt.Errorf("%s is not reachable: %w", r.name, err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	b, _ := json.Marshal(req)
	if err := p2p.WriteFrame(st, b); err != nil {
		return reply{}, nil, err
	}
	read := func() (reply, error) {
		rb, err := st.ReadFrame(maxReply)
		if err != nil {
			return reply{}, fmt.Errorf("%s: %w", r.name, err)
		}
		var rep reply
		if err := json.Unmarshal(rb, &rep); err != nil {
			return reply{}, fmt.Errorf("%s sent a malformed reply", r.name)
		}
		return rep, nil
	}
	// A put is told go-ahead (or refused) before its body is sent, so a
	// refusal costs no upload.
	var rep reply
	if body != nil {
		if rep, err = read(); err != nil {
			return rep, nil, err
		}
		if rep.Error == "" {
			if _, err := st.Write(body); err != nil {
				return reply{}, nil, err
			}
			st.CloseWrite()
			if rep, err = read(); err != nil {
				return rep, nil, err
			}
		}
	} else {
		st.CloseWrite()
		if rep, err = read(); err != nil {
			return rep, nil, err
		}
	}
	if rep.Error != "" {
		var kind error
		switch rep.Code {
		case "quota":
			kind = ErrOverQuota
		case "not-stored":
			kind = ErrNotStored
		case "no-offer":
			kind = ErrNoOffer
		}
		if kind != nil {
			return rep, nil, fmt.Errorf("%s: %s (%w)", r.name, rep.Error, kind)
		}
		return rep, nil, fmt.Errorf("%s: %s", r.name, rep.Error)
	}
	if rep.Size > maxObject || rep.Size < 0 {
		return rep, nil, fmt.Errorf("%s sent an object of %d bytes", r.name, rep.Size)
	}
	var data []byte
	if rep.Size > 0 {
		data = make([]byte, rep.Size)
		if _, err := io.ReadFull(st.R, data); err != nil {
			return rep, nil, fmt.Errorf("%s: truncated object: %w", r.name, err)
		}
	}
	return rep, data, nil
}

// Put stores an object with the friend.
func (r *Remote) Put(ctx context.Context, kind, name string, data []byte) error {
	if len(data) > maxObject {
		return fmt.Errorf("object of %d bytes is over the %d a friend takes", len(data), maxObject)
	}
	if data == nil {
		data = []byte{}
	}
	_, _, err := r.call(ctx, request{Op: "put", Kind: kind, Name: name, Size: int64(len(data))}, data)
	return err
}

// Get reads an object back.
func (r *Remote) Get(ctx context.Context, kind, name string) ([]byte, error) {
	rep, data, err := r.call(ctx, request{Op: "get", Kind: kind, Name: name}, nil)
	if err != nil {
		return nil, err
	}
	if data == nil && rep.Size == 0 {
		data = []byte{}
	}
	return data, nil
}

// List lists a kind's objects.
func (r *Remote) List(ctx context.Context, kind string) ([]Object, error) {
	rep, _, err := r.call(ctx, request{Op: "list", Kind: kind}, nil)
	return rep.Objects, err
}

// Delete removes an object.
func (r *Remote) Delete(ctx context.Context, kind, name string) error {
	_, _, err := r.call(ctx, request{Op: "delete", Kind: kind, Name: name}, nil)
	return err
}

// Space is what the repository takes at the friend, and what they offer.
func (r *Remote) Space(ctx context.Context) (used, quota int64, err error) {
	rep, _, err := r.call(ctx, request{Op: "space"}, nil)
	return rep.Used, rep.Quota, err
}

// Hello tells the friend which peer may read the repository back for a
// restore: the one whose key comes from the recovery code.
func (r *Remote) Hello(ctx context.Context, restorePub []byte) error {
	id, err := RestorePeer(restorePub)
	if err != nil {
		return err
	}
	_, _, err = r.call(ctx, request{Op: "hello", RestorePeer: id.String()}, nil)
	return err
}

// RestorePeer is the libp2p peer id of the restore key.
func RestorePeer(pub []byte) (peer.ID, error) {
	pk, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(pk)
}

// RestoreHost is a libp2p host with the restore key, for reading backups
// back from friends before the node (and its key) exists again.
func RestoreHost(ctx context.Context, k *Keys) (*p2p.Host, error) {
	return p2p.New(ctx, p2p.Config{Key: ed25519.PrivateKey(k.RestoreKey), Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
}
