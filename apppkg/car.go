package apppkg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/index"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"
)

// The package file is one CARv2 file. Its only root is the descriptor: a raw
// block (CIDv1, codec raw, sha2-256) holding this JSON object:
//
//	{"format":"erg-package-v1","app":"<app id>","version":N,
//	 "root":"<CIDv1 of the UnixFS root>","manifestSha256":"<hex>",
//	 "signature":"<base64 ed25519 signature>"}
//
// The signature is by the key the app id names, over signedBytes: the
// domain prefix "erg-package-v1\x00" followed by app id, version (decimal),
// root CID and manifest hash, each ended by a NUL byte. The data payload
// carries every block of the UnixFS DAG and the descriptor, each exactly
// once; blocks are CIDv1 (dag-pb or raw) with sha2-256. The CARv2 index is
// written for other tools; Open ignores it and indexes the payload itself.
const descriptorFormat = "erg-package-v1"

type descriptor struct {
	Format         string `json:"format"`
	App            string `json:"app"`
	Version        int64  `json:"version"`
	Root           string `json:"root"`
	ManifestSHA256 string `json:"manifestSha256"`
	Signature      []byte `json:"signature"`
}

func (d *descriptor) signedBytes() []byte {
	var b []byte
	for _, s := range []string{descriptorFormat, d.App, strconv.FormatInt(d.Version, 10), d.Root, d.ManifestSHA256} {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

// cidBuilder makes the CIDs of every block in a package.
var cidBuilder = cid.V1Builder{Codec: uint64(multicodec.DagPb), MhType: mh.SHA2_256}

// maxBlockSize bounds one block; the importer makes 256 KiB chunks and
// directory blocks are sharded long before this.
const maxBlockSize = 2 << 20

// checkCID refuses any CID a packer of ours would not make, so identity
// hashes and odd codecs never reach the UnixFS code.
func checkCID(c cid.Cid) error {
	p := c.Prefix()
	if p.Version != 1 || p.MhType != mh.SHA2_256 || p.MhLength != 32 ||
		(p.Codec != uint64(multicodec.DagPb) && p.Codec != uint64(multicodec.Raw)) {
		return fmt.Errorf("block %s: only CIDv1 dag-pb or raw blocks with sha2-256 are allowed", c)
	}
	return nil
}

func decodeNode(c cid.Cid, data []byte) (ipld.Node, error) {
	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		return nil, err
	}
	if c.Prefix().Codec == uint64(multicodec.Raw) {
		return merkledag.DecodeRawBlock(b)
	}
	return merkledag.DecodeProtobufBlock(b)
}

type span struct{ off, size int64 }

// carSink is a write-only DAGService that appends each new block as a CAR
// section to a file, remembering where each one went so the importer can
// read back what it wrote. The file is either a scratch file copied into the
// package at the end, or, when the package goes to an empty regular file,
// that file itself: the sections are then written in place after room left
// for the headers, and nothing is written twice.
type carSink struct {
	f      *os.File
	direct bool  // f is the package file; sections start at base
	base   int64 // offset in f of the first block section
	off    int64 // bytes of sections written
	spans  map[cid.Cid]span
	order  []index.Record
	buf    []byte
}

func newCarSink(dir string) (*carSink, error) {
	f, err := os.CreateTemp(dir, "erg-pack-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // an unlinked file cleans itself up on any exit
	return &carSink{f: f, spans: map[cid.Cid]span{}}, nil
}

// directHeaderSize is what precedes the first block section in a package:
// the CARv2 pragma and header and the CARv1 header, whose one root, the
// descriptor, always has a CID of the same length.
var directHeaderSize = int64(car.PragmaSize + car.HeaderSize + len(carV1Header(cid.NewCidV1(uint64(multicodec.Raw), make(mh.Multihash, 34)))))

// newDirectSink returns a sink writing straight into f, or nil if f is not
// an empty regular file it can seek in and read back.
func newDirectSink(w io.Writer) *carSink {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		return nil
	}
	if pos, err := f.Seek(0, io.SeekCurrent); err != nil || pos != 0 {
		return nil
	}
	return &carSink{f: f, direct: true, base: directHeaderSize, spans: map[cid.Cid]span{}}
}

// Close releases the scratch file; a direct sink's file belongs to the caller.
func (s *carSink) Close() error {
	if s.direct {
		return nil
	}
	return s.f.Close()
}

func (s *carSink) Add(_ context.Context, nd ipld.Node) error {
	return s.put(nd.Cid(), nd.RawData())
}

func (s *carSink) put(c cid.Cid, data []byte) error {
	if _, ok := s.spans[c]; ok {
		return nil
	}
	cb := c.Bytes()
	sec := binary.AppendUvarint(s.buf[:0], uint64(len(cb)+len(data)))
	sec = append(sec, cb...)
	hl := len(sec)
	sec = append(sec, data...)
	s.buf = sec
	start := s.off
	if _, err := s.f.WriteAt(sec, s.base+start); err != nil {
		return err
	}
	s.off += int64(len(sec))
	s.spans[c] = span{start + int64(hl), int64(len(data))}
	s.order = append(s.order, index.Record{Cid: c, Offset: uint64(start)})
	return nil
}

func (s *carSink) AddMany(ctx context.Context, nds []ipld.Node) error {
	for _, nd := range nds {
		if err := s.Add(ctx, nd); err != nil {
			return err
		}
	}
	return nil
}

func (s *carSink) Get(_ context.Context, c cid.Cid) (ipld.Node, error) {
	sp, ok := s.spans[c]
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	data := make([]byte, sp.size)
	if _, err := s.f.ReadAt(data, s.base+sp.off); err != nil {
		return nil, err
	}
	return decodeNode(c, data)
}

func (s *carSink) GetMany(ctx context.Context, cids []cid.Cid) <-chan *ipld.NodeOption {
	return getMany(ctx, s, cids)
}

func (s *carSink) Remove(context.Context, cid.Cid) error       { return errors.ErrUnsupported }
func (s *carSink) RemoveMany(context.Context, []cid.Cid) error { return errors.ErrUnsupported }

func getMany(ctx context.Context, g ipld.NodeGetter, cids []cid.Cid) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, len(cids))
	for _, c := range cids {
		nd, err := g.Get(ctx, c)
		out <- &ipld.NodeOption{Node: nd, Err: err}
	}
	close(out)
	return out
}

// finish signs a descriptor for root and writes the whole package to w.
func (s *carSink) finish(w io.Writer, key ed25519.PrivateKey, version int64, root cid.Cid, manifest []byte) (descCID cid.Cid, size int64, err error) {
	sum := sha256.Sum256(manifest)
	d := descriptor{
		Format:         descriptorFormat,
		App:            AppID(key.Public().(ed25519.PublicKey)),
		Version:        version,
		Root:           root.String(),
		ManifestSHA256: hex.EncodeToString(sum[:]),
	}
	d.Signature = ed25519.Sign(key, d.signedBytes())
	return s.finishWith(w, &d)
}

func (s *carSink) finishWith(w io.Writer, d *descriptor) (descCID cid.Cid, size int64, err error) {
	db, err := json.Marshal(d)
	if err != nil {
		return cid.Undef, 0, err
	}
	descCID, err = cid.V1Builder{Codec: uint64(multicodec.Raw), MhType: mh.SHA2_256}.Sum(db)
	if err != nil {
		return cid.Undef, 0, err
	}
	if err := s.put(descCID, db); err != nil {
		return cid.Undef, 0, err
	}

	v1h := carV1Header(descCID)
	hdr := car.NewHeader(uint64(len(v1h)) + uint64(s.off))
	idx, err := index.New(multicodec.CarMultihashIndexSorted)
	if err != nil {
		return cid.Undef, 0, err
	}
	recs := make([]index.Record, len(s.order))
	for i, r := range s.order {
		recs[i] = index.Record{Cid: r.Cid, Offset: r.Offset + uint64(len(v1h))}
	}
	if err := idx.Load(recs); err != nil {
		return cid.Undef, 0, err
	}
	if s.direct {
		if int64(car.PragmaSize+car.HeaderSize+len(v1h)) != s.base {
			return cid.Undef, 0, errors.New("descriptor CID has an unexpected length")
		}
		head := bytes.NewBuffer(append([]byte{}, car.Pragma...))
		if _, err := hdr.WriteTo(head); err != nil {
			return cid.Undef, 0, err
		}
		head.Write(v1h)
		iw := &countWriter{w: io.NewOffsetWriter(s.f, s.base+s.off)}
		if _, err := index.WriteTo(idx, iw); err != nil {
			return cid.Undef, 0, err
		}
		if _, err := s.f.WriteAt(head.Bytes(), 0); err != nil {
			return cid.Undef, 0, err
		}
		size = s.base + s.off + iw.n
		if _, err := s.f.Seek(size, io.SeekStart); err != nil {
			return cid.Undef, 0, err
		}
		return descCID, size, nil
	}
	cw := &countWriter{w: w}
	if _, err := cw.Write(car.Pragma); err != nil {
		return cid.Undef, 0, err
	}
	if _, err := hdr.WriteTo(cw); err != nil {
		return cid.Undef, 0, err
	}
	if _, err := cw.Write(v1h); err != nil {
		return cid.Undef, 0, err
	}
	if _, err := io.Copy(cw, io.NewSectionReader(s.f, 0, s.off)); err != nil {
		return cid.Undef, 0, err
	}
	if _, err := index.WriteTo(idx, cw); err != nil {
		return cid.Undef, 0, err
	}
	return descCID, cw.n, nil
}

// carV1Header is the length-prefixed DAG-CBOR header {roots: [root],
// version: 1} of the CARv1 payload, written by hand so that it is stable.
func carV1Header(root cid.Cid) []byte {
	cb := append([]byte{0}, root.Bytes()...) // tag 42 holds 0x00 + the CID
	var h []byte
	h = append(h, 0xa2)                // map(2)
	h = append(h, 0x65)                // text(5)
	h = append(h, "roots"...)          //
	h = append(h, 0x81, 0xd8, 0x2a)    // array(1), tag(42)
	h = append(h, 0x58, byte(len(cb))) // bytes(len)
	h = append(h, cb...)
	h = append(h, 0x67)
	h = append(h, "version"...)
	h = append(h, 0x01)
	return append(binary.AppendUvarint(nil, uint64(len(h))), h...)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
