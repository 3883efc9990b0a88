package grains

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"erg/sandbox"
)

// BridgePort is the loopback port in every grain's sandbox where the
// node's bridge answers (package powerbox), as Sandstorm's HTTP bridge
// does on its own. An app that itself listens there gets no bridge.
const BridgePort = 15239

// bridgeEnv tells an app where its bridge is: HTTP on the loopback port,
// and the unix socket.
var bridgeEnv = []string{
	"ERG_BRIDGE_URL=http://127.0.0.1:" + strconv.Itoa(BridgePort),
	"ERG_BRIDGE_SOCKET=" + sandbox.BridgeSocket,
}

// bridge serves a started grain's bridge listeners until its sandbox ends
// (which closes them). The handler is the grain's own: the node knows
// which grain asks by which listener the request came on.
func (s *Service) bridge(id string, sb *sandbox.Sandbox) {
	b := sb.Bridge()
	if b == nil || s.cfg.Bridge == nil {
		return
	}
	h := s.cfg.Bridge(id)
	tcp := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	s.bg.Add(2)
	go func() { defer s.bg.Done(); tcp.Serve(b.TCP) }()
	go func() { defer s.bg.Done(); s.serveBridgeSocket(id, b.Unix, sb) }()
	go func() {
		<-sb.Done()
		tcp.Close()
	}()
}

// serveBridgeSocket hands each connection to the bridge socket to
// Config.BridgeConn until the sandbox ends, which closes the listener and
// every connection still open.
func (s *Service) serveBridgeSocket(id string, l net.Listener, sb *sandbox.Sandbox) {
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	go func() {
		<-sb.Done()
		mu.Lock()
		defer mu.Unlock()
		for c := range open {
			c.Close()
		}
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if s.cfg.BridgeConn == nil {
			c.Close()
			continue
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		go func() {
			s.cfg.BridgeConn(id, c)
			c.Close()
			mu.Lock()
			delete(open, c)
			mu.Unlock()
		}()
	}
}
