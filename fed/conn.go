package fed

import (
	"io"

	"capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/rpc"
	"capnproto.org/go/capnp/v3/rpc/transport"
)

// MaxMessageSize bounds one Cap'n Proto message from another node; a
// larger one ends the connection. Writes carry at most 256 KiB of data, so
// legitimate messages stay far below it.
const MaxMessageSize = 1 << 20

// NewConn runs Cap'n Proto RPC over rwc (a libp2p stream), offering
// bootstrap (which NewConn takes over) to the other side. Messages larger
// than MaxMessageSize are refused.
func NewConn(rwc io.ReadWriteCloser, bootstrap capnp.Client) *rpc.Conn {
	return rpc.NewConn(transport.New(newCodec(rwc)), &rpc.Options{BootstrapClient: bootstrap})
}

type codec struct {
	enc *capnp.Encoder
	dec *capnp.Decoder
	c   io.Closer
}

func newCodec(rwc io.ReadWriteCloser) *codec {
	dec := capnp.NewDecoder(rwc)
	dec.MaxMessageSize = MaxMessageSize
	return &codec{enc: capnp.NewEncoder(rwc), dec: dec, c: rwc}
}

func (c *codec) Encode(m *capnp.Message) error   { return c.enc.Encode(m) }
func (c *codec) Decode() (*capnp.Message, error) { return c.dec.Decode() }
func (c *codec) Close() error                    { return c.c.Close() }
