// Package tlsforward is remote access through a friend: a node that is
// reachable forwards TLS connections for a friend's domain to the friend's
// node over libp2p without decrypting them. It reads only the SNI of the
// ClientHello, forwards a name only to the friend who asked for it, and
// splices the bytes onto a stream to that friend, where TLS ends. The
// forwarding node never holds the friend's key and cannot read the traffic.
package tlsforward

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The two stream protocols: a node asks a friend to forward its domain
// (AskProtocol), and the friend hands each connection for it over
// (ForwardProtocol).
const (
	AskProtocol     protocol.ID = "/erg/tls-forward-ask/1"
	ForwardProtocol protocol.ID = "/erg/tls-forward/2"
)

// Config is what the service needs from the node.
type Config struct {
	Host   host.Host
	Domain string // this node's own domain: never forwarded for anyone
	// IsFriend and FriendName say who a peer is; only friends may ask,
	// and only friends' forwarded connections are taken.
	IsFriend   func(peer.ID) bool
	FriendName func(peer.ID) string
	// StateFile, if set, keeps the friends asked and the names forwarded
	// across restarts (see state.go).
	StateFile string
	// Deliver hands a connection a friend forwarded to this node's HTTPS
	// server; false if it is closed.
	Deliver func(net.Conn) bool
	// WebAddr is the host:port this node's web port is reached at, which
	// a friend points its DNS at.
	WebAddr func() string
	Log     *slog.Logger
}

// Route is one name this node forwards for a friend.
type Route struct {
	Domain  string
	Peer    peer.ID
	Friend  string
	Since   time.Time
	Stopped bool // the owner stopped it; the friend's asks are refused
	Conns   int  // connections forwarded
}

// Asked is this node's request to a friend to forward its domain.
type Asked struct {
	Peer     peer.ID
	Friend   string
	Addr     string // where the friend's node takes connections for us
	Err      string // why the friend refused, or the last test failed
	Tested   time.Time
	TestedOK bool
	pending  bool // asked before a restart and not answered since
}

// Service forwards for friends and asks friends to forward for this node.
type Service struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	routes map[string]*Route  // by domain
	asked  map[peer.ID]*Asked // friends asked to forward for us
	wg     sync.WaitGroup
	live   map[net.Conn]struct{} // connections being forwarded, cut at Close
	closed bool
	cancel context.CancelFunc // ends reask
	bg     sync.WaitGroup     // reask
	taken  uint64             // copies of the saved state taken (stateLocked)

	saveMu sync.Mutex // one write of the state file at a time
	saved  uint64     // the copy last written
}

// New registers the protocols on the host.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: cfg.Log, routes: map[string]*Route{}, asked: map[peer.ID]*Asked{}, live: map[net.Conn]struct{}{}}
	if err := s.load(); err != nil {
		s.log.Warn("remote access: the saved forwarding state is unreadable; starting without it", "file", cfg.StateFile, "err", err)
	}
	cfg.Host.SetStreamHandler(AskProtocol, s.serveAsk)
	cfg.Host.SetStreamHandler(ForwardProtocol, s.serveForward)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.bg.Go(func() { s.reask(ctx) })
	return s
}

// Close stops taking asks and forwarded connections, and cuts the ones
// being forwarded: a visitor's idle keep-alive connection would
// otherwise hold the node's shutdown for as long as the browser keeps it.
func (s *Service) Close() {
	s.cancel()
	s.bg.Wait()
	s.cfg.Host.RemoveStreamHandler(AskProtocol)
	s.cfg.Host.RemoveStreamHandler(ForwardProtocol)
	s.mu.Lock()
	s.closed = true
	for c := range s.live {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

type askMsg struct {
	Domain string `json:"domain"`
}

type askReply struct {
	Addr  string `json:"addr,omitempty"`
	Error string `json:"error,omitempty"`
}

const maxMsg = 4 << 10

// Ask asks a friend to forward this node's domain to it, and remembers
// the answer.
func (s *Service) Ask(ctx context.Context, friend peer.ID) (Asked, error) {
	a := Asked{Peer: friend, Friend: s.cfg.FriendName(friend)}
	reply, err := s.ask(ctx, friend)
	if err == nil && reply.Error != "" {
		err = &refusal{reply.Error}
	}
	if err != nil {
		a.Err = err.Error()
	} else {
		a.Addr = reply.Addr
	}
	s.change(func() error { s.asked[friend] = &a; return nil })
	return a, err
}

func (s *Service) ask(ctx context.Context, friend peer.ID) (askReply, error) {
	var reply askReply
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := s.cfg.Host.NewStream(ctx, friend, AskProtocol)
	if err != nil {
		return reply, fmt.Errorf("reach %s: %w", s.cfg.FriendName(friend), err)
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	if err := json.NewEncoder(st).Encode(askMsg{Domain: s.cfg.Domain}); err != nil {
		return reply, err
	}
	if err := json.NewDecoder(io.LimitReader(st, maxMsg)).Decode(&reply); err != nil {
		return reply, fmt.Errorf("%s's answer: %w", s.cfg.FriendName(friend), err)
	}
	return reply, nil
}

// Unask stops taking forwarded connections from a friend.
func (s *Service) Unask(friend peer.ID) {
	s.change(func() error { delete(s.asked, friend); return nil })
}

// Asked lists the friends asked to forward for this node.
func (s *Service) Asked() []Asked {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Asked
	for _, a := range s.asked {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b Asked) int { return strings.Compare(a.Friend, b.Friend) })
	return out
}

// Test connects to the friend's forwarder as a browser would, naming
// this node's domain, and checks that the TLS handshake ends here: the
// certificate shown is this node's own (want).
func (s *Service) Test(ctx context.Context, friend peer.ID, want *tls.Certificate) error {
	s.mu.Lock()
	a, ok := s.asked[friend]
	addr := ""
	if ok {
		addr = a.Addr
	}
	s.mu.Unlock()
	if !ok || addr == "" {
		return errors.New("ask the friend to forward first")
	}
	err := probe(ctx, addr, s.cfg.Domain, want)
	s.mu.Lock()
	if a, ok := s.asked[friend]; ok {
		a.Tested, a.TestedOK, a.Err = time.Now(), err == nil, ""
		if err != nil {
			a.Err = err.Error()
		}
	}
	s.mu.Unlock()
	return err
}

func probe(ctx context.Context, addr, name string, want *tls.Certificate) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got []byte
	d := tls.Dialer{Config: &tls.Config{ServerName: name, InsecureSkipVerify: true, // checked by hand below: it must be exactly ours
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				got = cs.PeerCertificates[0].Raw
			}
			return nil
		}}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("through %s: %w", addr, err)
	}
	c.Close()
	if want == nil || len(want.Certificate) == 0 || string(got) != string(want.Certificate[0]) {
		return fmt.Errorf("through %s a handshake for %s ended somewhere else (another certificate)", addr, name)
	}
	return nil
}

// serveAsk answers a friend who asks this node to forward its domain.
func (s *Service) serveAsk(st network.Stream) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(15 * time.Second))
	p := st.Conn().RemotePeer()
	var msg askMsg
	reply := askReply{}
	if err := json.NewDecoder(io.LimitReader(st, maxMsg)).Decode(&msg); err != nil {
		return
	}
	if err := s.accept(p, strings.ToLower(strings.TrimSuffix(msg.Domain, "."))); err != nil {
		reply.Error = err.Error()
		s.log.Info("refused to forward", "friend", s.cfg.FriendName(p), "domain", msg.Domain, "err", err)
	} else {
		reply.Addr = s.cfg.WebAddr()
		s.log.Info("forwarding TLS for a friend", "friend", s.cfg.FriendName(p), "domain", msg.Domain)
	}
	json.NewEncoder(st).Encode(reply)
}

func (s *Service) accept(p peer.ID, domain string) error {
	if !s.cfg.IsFriend(p) {
		return errors.New("only friends may ask")
	}
	if !validDomain(domain) {
		return fmt.Errorf("%q is not a domain name", domain)
	}
	own := s.cfg.Domain
	if domain == own || strings.HasSuffix(domain, "."+own) || strings.HasSuffix(own, "."+domain) {
		return fmt.Errorf("%s overlaps this node's own domain %s", domain, own)
	}
	return s.change(func() error { return s.routeLocked(p, domain) })
}

// routeLocked forwards domain for p, if no other friend's route is in
// the way; s.mu held.
func (s *Service) routeLocked(p peer.ID, domain string) error {
	for d, r := range s.routes {
		if r.Peer == p && r.Stopped {
			return errors.New("this node's owner stopped forwarding for you")
		}
		if r.Peer != p && (d == domain || strings.HasSuffix(d, "."+domain) || strings.HasSuffix(domain, "."+d)) {
			return fmt.Errorf("another friend's node is forwarded %s", d)
		}
	}
	for d, r := range s.routes {
		if r.Peer == p && d != domain {
			delete(s.routes, d) // a friend has one domain; the newest ask wins
		}
	}
	if r, ok := s.routes[domain]; ok {
		r.Friend = s.cfg.FriendName(p)
	} else {
		s.routes[domain] = &Route{Domain: domain, Peer: p, Friend: s.cfg.FriendName(p), Since: time.Now()}
	}
	return nil
}

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Routes lists the names this node forwards for friends.
func (s *Service) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Route
	for _, r := range s.routes {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Domain, b.Domain) })
	return out
}

// Stop stops forwarding for a friend: open connections are left to end,
// new ones refused, and so are the friend's asks until Resume.
func (s *Service) Stop(domain string) bool { return s.setStopped(domain, true) }

// Resume forwards for the friend again.
func (s *Service) Resume(domain string) bool { return s.setStopped(domain, false) }

func (s *Service) setStopped(domain string, stopped bool) bool {
	return s.change(func() error {
		r, ok := s.routes[domain]
		if !ok {
			return errNoRoute
		}
		r.Stopped = stopped
		return nil
	}) == nil
}

var errNoRoute = errors.New("no such route")

// route finds the friend a name is forwarded to: the domain itself or a
// name one label under it (the friend's grains), and counts c as live
// until done.
func (s *Service) route(sni string, c net.Conn) (*Route, bool) {
	sni = strings.ToLower(sni)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	r, ok := s.routes[sni]
	if !ok {
		if _, parent, cut := strings.Cut(sni, "."); cut {
			r, ok = s.routes[parent]
		}
	}
	if !ok || r.Stopped || !s.cfg.IsFriend(r.Peer) {
		return nil, false
	}
	r.Conns++
	s.live[c] = struct{}{}
	s.wg.Add(1)
	return r, true
}

// done ends a forwarded connection route counted.
func (s *Service) done(c net.Conn) {
	s.mu.Lock()
	delete(s.live, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Forward takes a TLS connection whose ClientHello named sni (the
// hello's bytes still to be read from c) and splices it onto a stream to
// the friend the name belongs to. A name nobody asked for is closed
// unanswered. It returns when the connection is over.
func (s *Service) Forward(c net.Conn, sni string) {
	defer c.Close()
	r, ok := s.route(sni, c)
	if !ok {
		s.log.Debug("TLS for a name not forwarded: closed", "sni", sni, "from", c.RemoteAddr())
		return
	}
	defer s.done(c)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	st, err := s.cfg.Host.NewStream(ctx, r.Peer, ForwardProtocol)
	cancel()
	if err != nil {
		s.log.Warn("forward TLS: friend unreachable", "friend", r.Friend, "sni", sni, "err", err)
		return
	}
	defer st.Close()
	if err := writeVisitor(st, c.RemoteAddr()); err != nil {
		s.log.Warn("forward TLS: friend went away", "friend", r.Friend, "sni", sni, "err", err)
		return
	}
	splice(c, st)
}

// splice copies both ways until either side is done, then closes both.
func splice(c net.Conn, st network.Stream) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(st, c); st.CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, st); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	type cw interface{ CloseWrite() error }
	if x, ok := c.(cw); ok {
		x.CloseWrite()
		return
	}
	if u, ok := c.(interface{ Unwrap() net.Conn }); ok {
		closeWrite(u.Unwrap())
		return
	}
	c.Close()
}

// serveForward takes a connection a friend forwards for this node's
// domain, from a friend this node asked, into the HTTPS server.
func (s *Service) serveForward(st network.Stream) {
	p := st.Conn().RemotePeer()
	s.mu.Lock()
	a, asked := s.asked[p]
	ok := asked && a.Addr != "" && !s.closed
	s.mu.Unlock()
	if !ok || !s.cfg.IsFriend(p) {
		st.Reset()
		return
	}
	visitor, err := readVisitor(st)
	if err != nil {
		s.log.Info("forwarded connection refused", "friend", s.cfg.FriendName(p), "err", err)
		st.Reset()
		return
	}
	if !s.cfg.Deliver(&streamConn{Stream: st, visitor: visitor}) {
		st.Reset()
	}
}

// streamConn is a libp2p stream as the net.Conn an HTTPS server takes.
type streamConn struct {
	network.Stream
	visitor net.Addr // the browser's address, as the forwarding friend saw it
}

func (c *streamConn) LocalAddr() net.Addr {
	if a, err := manet.ToNetAddr(c.Conn().LocalMultiaddr()); err == nil {
		return a
	}
	return &net.TCPAddr{}
}

// RemoteAddr is the visitor's address as the friend forwarding saw it,
// so that the limits per client address (sign-in attempts, API tokens)
// count each visitor, not every visitor through one friend as one; it is
// the friend's own address if the friend said none.
func (c *streamConn) RemoteAddr() net.Addr {
	if c.visitor != nil {
		return c.visitor
	}
	if a, err := manet.ToNetAddr(c.Conn().RemoteMultiaddr()); err == nil {
		return a
	}
	return &net.TCPAddr{}
}

// PeekSNI reads a TLS ClientHello from c (within the deadline set on it)
// and returns the name it asks for, and c with the bytes read put back.
// The hello is parsed by crypto/tls itself, which stops there: nothing is
// written to c.
func PeekSNI(c net.Conn) (string, net.Conn, error) {
	rec := &recorder{r: c}
	var name string
	seen := false
	errDone := errors.New("hello read")
	tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, seen = h.ServerName, true
		return nil, errDone
	}}).Handshake()
	back := &prefixed{Conn: c, prefix: rec.buf}
	if !seen {
		return "", back, errors.New("not a TLS ClientHello")
	}
	return name, back, nil
}

// recorder is the read side of a connection that keeps what was read and
// swallows writes (the alert crypto/tls sends on stopping).
type recorder struct {
	r   io.Reader
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}
func (r *recorder) Write(p []byte) (int, error)      { return len(p), nil }
func (r *recorder) Close() error                     { return nil }
func (r *recorder) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (r *recorder) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (r *recorder) SetDeadline(time.Time) error      { return nil }
func (r *recorder) SetReadDeadline(time.Time) error  { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }

type prefixed struct {
	net.Conn
	prefix []byte
}

func (c *prefixed) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *prefixed) Unwrap() net.Conn { return c.Conn }
