package grains

import (
	"net/http"
	"strconv"
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
	unix := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	s.bg.Add(2)
	go func() { defer s.bg.Done(); tcp.Serve(b.TCP) }()
	go func() { defer s.bg.Done(); unix.Serve(b.Unix) }()
	go func() {
		<-sb.Done()
		tcp.Close()
		unix.Close()
	}()
}
