package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/tlsforward"
	"erg/tlsnode"
)

// remoteSettings is the Settings page's part on remote access through
// friends: whom this node asked to forward for it, and whom it forwards
// for.
type remoteSettings struct {
	Asked   []tlsforward.Asked
	Routes  []tlsforward.Route
	Friends []string
}

func (h *Handler) remoteSettings(r *http.Request) *remoteSettings {
	if h.forward == nil {
		return nil
	}
	s := &remoteSettings{Asked: h.forward.Asked(), Routes: h.forward.Routes()}
	if fs, err := h.fr.List(r.Context()); err == nil {
		for _, f := range fs {
			s.Friends = append(s.Friends, f.Name)
		}
	}
	return s
}

func (h *Handler) remotePages() []pageRoute {
	return []pageRoute{
		{"POST /settings/remote/ask", h.remoteAsk, false},
		{"POST /settings/remote/test", h.remoteTest, false},
		{"POST /settings/remote/stop", h.remoteStop, false},
		{"POST /settings/remote/resume", h.remoteResume, false},
	}
}

func (h *Handler) remoteFriend(w http.ResponseWriter, r *http.Request, a actor) (peer.ID, bool) {
	if !h.tlsOwner(w, r, a) {
		return "", false
	}
	f, err := h.fr.ByName(r.Context(), r.PostFormValue("friend"))
	if err != nil {
		h.renderSettings(w, r, a, statusOf(err), nil, "", erg.Message(err))
		return "", false
	}
	id, err := peer.Decode(f.Peer)
	if err != nil {
		h.failPage(w, r, err)
		return "", false
	}
	return id, true
}

func (h *Handler) remoteAsk(w http.ResponseWriter, r *http.Request, a actor) {
	id, ok := h.remoteFriend(w, r, a)
	if !ok {
		return
	}
	asked, err := h.forward.Ask(r.Context(), id)
	if err != nil {
		h.renderSettings(w, r, a, http.StatusBadGateway, nil, "", fmt.Sprintf("%s did not take it: %v", asked.Friend, err))
		return
	}
	msg := fmt.Sprintf("%s forwards %s to this node from %s", asked.Friend, h.domain, asked.Addr)
	h.renderSettings(w, r, a, http.StatusOK, nil, msg+": "+h.pointDNS(r.Context(), asked.Addr), "")
}

// pointDNS sets the domain's address records to the forwarding friend's
// address, where the node's DNS provider lets it, and says what the owner
// still has to do.
func (h *Handler) pointDNS(ctx context.Context, addr string) string {
	manual := fmt.Sprintf("point the DNS records of %s and *.%s there.", h.domain, h.domain)
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return manual
	}
	if ap.Port() != 443 {
		manual += fmt.Sprintf(" Browsers will need port %d in the address, as the friend's node does not take HTTPS on 443.", ap.Port())
	}
	switch err := h.certs.SetAddressRecords(ctx, ap.Addr()); {
	case err == nil:
		return strings.Replace(manual, "point the DNS records", "this node pointed the DNS records", 1)
	case errors.Is(err, tlsnode.ErrCannotSetRecords):
		return manual
	default:
		return "setting the DNS records failed (" + err.Error() + "): " + manual
	}
}

func (h *Handler) remoteTest(w http.ResponseWriter, r *http.Request, a actor) {
	id, ok := h.remoteFriend(w, r, a)
	if !ok {
		return
	}
	if err := h.forward.Test(r.Context(), id, h.certs.Certificate()); err != nil {
		h.renderSettings(w, r, a, http.StatusBadGateway, nil, "", "The test failed: "+err.Error())
		return
	}
	h.renderSettings(w, r, a, http.StatusOK, nil, "Remote access works: a TLS connection through your friend's node ends here, with this node's certificate.", "")
}

func (h *Handler) remoteStop(w http.ResponseWriter, r *http.Request, a actor) {
	if !h.tlsOwner(w, r, a) {
		return
	}
	if !h.forward.Stop(r.PostFormValue("domain")) {
		h.renderSettings(w, r, a, http.StatusNotFound, nil, "", "This node does not forward "+r.PostFormValue("domain")+".")
		return
	}
	h.renderSettings(w, r, a, http.StatusOK, nil, "Stopped forwarding "+r.PostFormValue("domain")+".", "")
}

func (h *Handler) remoteResume(w http.ResponseWriter, r *http.Request, a actor) {
	if !h.tlsOwner(w, r, a) {
		return
	}
	if !h.forward.Resume(r.PostFormValue("domain")) {
		h.renderSettings(w, r, a, http.StatusNotFound, nil, "", "This node does not forward "+r.PostFormValue("domain")+".")
		return
	}
	h.renderSettings(w, r, a, http.StatusOK, nil, "Forwarding "+r.PostFormValue("domain")+" again.", "")
}
