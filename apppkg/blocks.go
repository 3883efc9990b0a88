package apppkg

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// Descriptor is what a package's signed descriptor block says, once its
// signature has been checked.
type Descriptor struct {
	App     string
	Version int64
	// Root is the root of the package's UnixFS tree.
	Root cid.Cid
}

// ParseDescriptor checks the signed descriptor block b: its form, and that
// the key its app id names signed it.
func ParseDescriptor(b []byte) (Descriptor, error) {
	d, err := parseDescriptor(b)
	if err != nil {
		return Descriptor{}, err
	}
	root, err := cid.Decode(d.Root)
	if err != nil {
		return Descriptor{}, fmt.Errorf("descriptor root: %w", err)
	}
	return Descriptor{App: d.App, Version: d.Version, Root: root}, nil
}

// WithDefaults fills in the default of each limit left zero.
func (l SizeLimits) WithDefaults() SizeLimits { return l.withDefaults() }

// FileCID returns the CID of the file at the slash path p in the package.
func (p *Package) FileCID(path string) (cid.Cid, bool) {
	for _, e := range p.entries {
		if e.path == path && e.kind == kindFile {
			return e.node.Cid(), true
		}
	}
	return cid.Undef, false
}

// ImportPackage puts the blocks of a verified package, its descriptor
// included, into bs, and returns the descriptor's CID.
func ImportPackage(ctx context.Context, p *Package, bs blockstore.Blockstore) (cid.Cid, error) {
	if p.store == nil || p.store.spans == nil {
		return cid.Undef, errors.New("the package was not opened from a file")
	}
	desc, err := DescriptorCID(p)
	if err != nil {
		return cid.Undef, err
	}
	var batch []blocks.Block
	for c := range p.store.spans {
		data, err := p.store.read(c)
		if err != nil {
			return cid.Undef, err
		}
		b, _ := blocks.NewBlockWithCid(data, c)
		batch = append(batch, b)
		if len(batch) == 64 {
			if err := bs.PutMany(ctx, batch); err != nil {
				return cid.Undef, err
			}
			batch = batch[:0]
		}
	}
	if err := bs.PutMany(ctx, batch); err != nil {
		return cid.Undef, err
	}
	return desc, nil
}

// DescriptorCID returns the CID of the signed descriptor block of a
// package from Open, OpenFile or OpenDAG.
func DescriptorCID(p *Package) (cid.Cid, error) {
	if p.desc.Defined() {
		return p.desc, nil
	}
	if p.store == nil || p.store.spans == nil {
		return cid.Undef, errors.New("the package was not opened from a file")
	}
	prefix := []byte(`{"format":"` + descriptorFormat + `"`)
	for c, sp := range p.store.spans {
		if c.Prefix().Codec != uint64(multicodec.Raw) || sp.size > 4096 {
			continue
		}
		data, err := p.store.read(c)
		if err != nil {
			return cid.Undef, err
		}
		if !bytes.HasPrefix(data, prefix) {
			continue
		}
		if d, err := parseDescriptor(data); err == nil && d.Root == p.CID.String() {
			return c, nil
		}
	}
	return cid.Undef, errors.New("the package has no descriptor block")
}

// CheckCID refuses any CID a packer of ours would not make: only CIDv1
// dag-pb or raw blocks with sha2-256 are allowed.
func CheckCID(c cid.Cid) error { return checkCID(c) }
