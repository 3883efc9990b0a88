package apppkg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
	"github.com/multiformats/go-multicodec"
)

// carStore serves the blocks of a package: those of a package file, whose
// CAR payload it indexes itself (the CARv2 index is not trusted), or, for
// OpenDAG, those in a blockstore. It hashes every block each time it reads
// it.
type carStore struct {
	r       io.ReaderAt
	spans   map[cid.Cid]span
	bs      blockstore.Blockstore // instead of r and spans
	visited map[cid.Cid]bool
	walked  int64 // bytes of the blocks visited, each once
	budget  int64 // work left for the walk; bounds DAGs that reuse blocks
}

func indexCAR(ctx context.Context, r io.ReaderAt, size int64, lim SizeLimits, progress func(done, total int64)) (*carStore, cid.Cid, error) {
	// The headers are parsed here rather than by a general CBOR decoder:
	// a package has exactly one form of them, and anything else is refused
	// before any untrusted length reaches an allocator.
	head := make([]byte, car.PragmaSize)
	if _, err := r.ReadAt(head, 0); err != nil || !bytes.Equal(head, car.Pragma) {
		return nil, cid.Undef, errors.New("not a CARv2 file")
	}
	var h car.Header
	if _, err := h.ReadFrom(io.NewSectionReader(r, car.PragmaSize, car.HeaderSize)); err != nil {
		return nil, cid.Undef, fmt.Errorf("CAR is truncated in its header: %w", err)
	}
	if h.DataOffset < car.PragmaSize+car.HeaderSize || h.DataOffset > uint64(size) || h.DataSize > uint64(size)-h.DataOffset {
		return nil, cid.Undef, errors.New("CAR is truncated: data payload runs past the end")
	}
	br := &offsetReader{r: io.NewSectionReader(r, int64(h.DataOffset), int64(h.DataSize)), off: int64(h.DataOffset)}
	hl, err := binary.ReadUvarint(br)
	if err != nil || hl > 1024 {
		return nil, cid.Undef, errors.New("CAR payload header is malformed")
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(br, hb); err != nil {
		return nil, cid.Undef, fmt.Errorf("CAR is truncated in its payload header: %w", err)
	}
	root, err := parseV1Header(hb)
	if err != nil {
		return nil, cid.Undef, err
	}
	if root.Prefix().Codec != uint64(multicodec.Raw) || checkCID(root) != nil {
		return nil, cid.Undef, errors.New("CAR root is not a package descriptor")
	}
	s := &carStore{r: r, spans: map[cid.Cid]span{}}
	end := int64(h.DataOffset + h.DataSize)
	var last int64
	for br.off < end {
		if done := br.off - int64(h.DataOffset); done-last >= 1<<20 {
			last = done
			if err := ctx.Err(); err != nil {
				return nil, cid.Undef, err
			}
			if progress != nil {
				progress(done, int64(h.DataSize))
			}
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, cid.Undef, fmt.Errorf("CAR is truncated or malformed at byte %d: %v", br.off, err)
		}
		if n == 0 || n > maxBlockSize+128 || int64(n) > end-br.off {
			return nil, cid.Undef, fmt.Errorf("CAR is truncated or malformed at byte %d: section of %d bytes", br.off, n)
		}
		sec := make([]byte, n)
		start := br.off
		if _, err := io.ReadFull(br, sec); err != nil {
			return nil, cid.Undef, fmt.Errorf("CAR is truncated: %w", err)
		}
		cl, c, err := cid.CidFromBytes(sec)
		if err != nil {
			return nil, cid.Undef, fmt.Errorf("CAR section at byte %d: %w", start, err)
		}
		if err := checkCID(c); err != nil {
			return nil, cid.Undef, err
		}
		if err := verifyBlock(c, sec[cl:]); err != nil {
			return nil, cid.Undef, err
		}
		if _, dup := s.spans[c]; dup {
			return nil, cid.Undef, fmt.Errorf("block %s appears twice", c)
		}
		if len(s.spans) > maxBlocks(lim) {
			return nil, cid.Undef, fmt.Errorf("too many blocks: %w", ErrTooLarge)
		}
		s.spans[c] = span{start + int64(cl), int64(n) - int64(cl)}
	}
	if _, ok := s.spans[root]; !ok {
		return nil, cid.Undef, errors.New("the CAR does not carry its descriptor block")
	}
	if progress != nil {
		progress(int64(h.DataSize), int64(h.DataSize))
	}
	return s, root, nil
}

// parseV1Header reads the one root from a CARv1 header in the form
// carV1Header writes, which is how DAG-CBOR encodes {roots: [root], version: 1}.
func parseV1Header(b []byte) (cid.Cid, error) {
	bad := errors.New("CAR payload header is not {roots: [descriptor], version: 1}")
	pre := []byte{0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x81, 0xd8, 0x2a, 0x58}
	post := []byte{0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01}
	if len(b) < len(pre)+2+len(post) || !bytes.HasPrefix(b, pre) || !bytes.HasSuffix(b, post) {
		return cid.Undef, bad
	}
	n := int(b[len(pre)])
	body := b[len(pre)+1 : len(b)-len(post)]
	if n != len(body) || body[0] != 0 {
		return cid.Undef, bad
	}
	c, err := cid.Cast(body[1:])
	if err != nil {
		return cid.Undef, fmt.Errorf("CAR root: %w", err)
	}
	return c, nil
}

func verifyBlock(c cid.Cid, data []byte) error {
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return err
	}
	if !got.Equals(c) {
		return fmt.Errorf("block %s: its bytes do not match its CID (the package is corrupt or was tampered with)", c)
	}
	return nil
}

type offsetReader struct {
	r   io.Reader
	off int64
	b   [1]byte
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.off += int64(n)
	return n, err
}

func (o *offsetReader) ReadByte() (byte, error) {
	_, err := io.ReadFull(o, o.b[:])
	return o.b[0], err
}

func (s *carStore) read(c cid.Cid) ([]byte, error) {
	if s.bs != nil {
		b, err := s.bs.Get(context.Background(), c)
		if ipld.IsNotFound(err) {
			return nil, fmt.Errorf("block %s is missing: the package DAG is incomplete", c)
		}
		if err != nil {
			return nil, fmt.Errorf("read block %s: %w", c, err)
		}
		data := b.RawData()
		if len(data) > maxBlockSize {
			return nil, fmt.Errorf("block %s is larger than %d bytes", c, maxBlockSize)
		}
		if err := verifyBlock(c, data); err != nil {
			return nil, err
		}
		return data, nil
	}
	sp, ok := s.spans[c]
	if !ok {
		return nil, fmt.Errorf("block %s is missing: the package DAG is incomplete", c)
	}
	data := make([]byte, sp.size)
	if _, err := s.r.ReadAt(data, sp.off); err != nil {
		return nil, fmt.Errorf("read block %s: %w", c, err)
	}
	if err := verifyBlock(c, data); err != nil {
		return nil, err
	}
	return data, nil
}

func (s *carStore) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := s.read(c)
	if err != nil {
		return nil, err
	}
	if s.visited != nil {
		if !s.visited[c] {
			s.walked += int64(len(data))
		}
		s.visited[c] = true
		s.budget -= 1024 + int64(len(data))
		if s.budget < 0 {
			return nil, fmt.Errorf("the package DAG reuses blocks too often: %w", ErrTooLarge)
		}
	}
	return decodeNode(c, data)
}

// leaf accounts for a raw leaf block as Get would, without reading it, and
// returns its length.
func (s *carStore) leaf(ctx context.Context, c cid.Cid) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	sp, ok := s.spans[c]
	if s.bs != nil {
		n, err := s.bs.GetSize(ctx, c)
		if err != nil && !ipld.IsNotFound(err) {
			return 0, fmt.Errorf("read block %s: %w", c, err)
		}
		if ok = err == nil; ok && n > maxBlockSize {
			return 0, fmt.Errorf("block %s is larger than %d bytes", c, maxBlockSize)
		}
		sp.size = int64(n)
	}
	if !ok {
		return 0, fmt.Errorf("block %s is missing: the package DAG is incomplete", c)
	}
	if s.visited != nil {
		if !s.visited[c] {
			s.walked += sp.size
		}
		s.visited[c] = true
		s.budget -= 1024 + sp.size
		if s.budget < 0 {
			return 0, fmt.Errorf("the package DAG reuses blocks too often: %w", ErrTooLarge)
		}
	}
	return sp.size, nil
}

func (s *carStore) GetMany(ctx context.Context, cids []cid.Cid) <-chan *ipld.NodeOption {
	return getMany(ctx, s, cids)
}

func (s *carStore) Add(context.Context, ipld.Node) error        { return errors.ErrUnsupported }
func (s *carStore) AddMany(context.Context, []ipld.Node) error  { return errors.ErrUnsupported }
func (s *carStore) Remove(context.Context, cid.Cid) error       { return errors.ErrUnsupported }
func (s *carStore) RemoveMany(context.Context, []cid.Cid) error { return errors.ErrUnsupported }
