package webui

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"erg"
	"erg/tlsnode"
)

// caPath and caCertPath are the page that explains how to trust the
// node's own CA and the CA certificate itself, both on plain HTTP (a
// device that does not trust the CA yet cannot open the HTTPS pages).
const (
	caPath     = "/_erg/ca"
	caCertPath = "/_erg/ca.crt"
)

// hstsMaxAge is a year, as browsers' preload lists ask. includeSubDomains
// covers every grain's origin, which the same wildcard certificate serves.
const hstsHeader = "max-age=31536000; includeSubDomains"

// hsts says browsers must use HTTPS for the domain and its grains from
// now on. Only with a certificate browsers trust unaided: with the node's
// own CA, a device that has not installed it yet could not even click
// through the warning.
func (h *Handler) hsts(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil && h.certs != nil && h.certs.Status().Trusted {
		w.Header().Set("Strict-Transport-Security", hstsHeader)
	}
}

// Redirector serves plain HTTP when the node serves HTTPS: every request
// for the node's names is sent to the same address over HTTPS, and with
// the node's own CA the shell's front page and caPath explain how to
// trust it.
func (h *Handler) Redirector() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, isGrain := h.grainHost(r.Host)
		isGrain = isGrain || h.apiHost(r.Host) // like a grain: its own name, on HTTPS
		kind := h.shellHost(r.Host)
		if !isGrain && kind == hostOther {
			http.Error(w, "This node answers to "+h.domain+", not "+r.Host+".", http.StatusMisdirectedRequest)
			return
		}
		if kind == hostShell && h.certs != nil && h.certs.CACertificate() != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			switch r.URL.Path {
			case "/", caPath:
				h.caPage(w, r)
				return
			case caCertPath:
				w.Header().Set("Content-Type", "application/x-x509-ca-cert")
				w.Header().Set("Content-Disposition", `attachment; filename="`+h.domain+`-ca.crt"`)
				w.Write(h.certs.CACertificate())
				return
			}
		}
		host := h.domain // one name for the shell, as over HTTP
		if isGrain {
			host = strings.ToLower(hostOnly(r.Host))
		}
		if h.httpsPort != "" && h.httpsPort != "443" {
			host = net.JoinHostPort(host, h.httpsPort)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// caPageData is what the page about trusting the node's own CA shows.
type caPageData struct {
	Domain      string
	Fingerprint string
	HTTPSURL    string
}

func (h *Handler) caPage(w http.ResponseWriter, r *http.Request) {
	url := "https://" + h.domain
	if h.httpsPort != "" && h.httpsPort != "443" {
		url += ":" + h.httpsPort
	}
	h.render(w, r, http.StatusOK, "trust", pageData{Title: "Trust this node", Data: caPageData{
		Domain: h.domain, Fingerprint: h.certs.Status().CAFingerprint, HTTPSURL: url + "/"}})
}

// tlsSettings is the Settings page's part on HTTPS, for the owner.
type tlsSettings struct {
	Status    tlsnode.Status
	Providers []string
	Settings  map[string][]string // each provider's setting names
	ACME      *tlsnode.ACMEConfig // saved, values blanked
	Names     []string            // ACME's saved setting names
	CAPage    string
	Remote    *remoteSettings
}

func (h *Handler) tlsSettings(r *http.Request, a actor) *tlsSettings {
	if h.certs == nil || !a.user.Owner {
		return nil
	}
	s := &tlsSettings{Status: h.certs.Status(), Providers: tlsnode.ProviderNames(), Settings: map[string][]string{}, Remote: h.remoteSettings(r)}
	for name, p := range tlsnode.Providers {
		s.Settings[name] = p.Settings
	}
	if s.ACME = h.certs.ACME(); s.ACME != nil {
		for k := range s.ACME.Credentials {
			s.Names = append(s.Names, k)
		}
		slices.Sort(s.Names)
	}
	if h.certs.CACertificate() != nil {
		s.CAPage = "http://" + h.domain + caPath
		if h.httpsPort != "" && h.httpsPort != "443" {
			s.CAPage = "http://" + net.JoinHostPort(h.domain, h.httpsPort) + caPath
		}
	}
	return s
}

// tlsPages are the owner's HTTPS settings: set up ACME, check now.
func (h *Handler) tlsPages() []pageRoute {
	return []pageRoute{
		{"POST /settings/tls/acme", h.setACME, false},
		{"POST /settings/tls/check", h.checkTLS, false},
	}
}

func (h *Handler) tlsOwner(w http.ResponseWriter, r *http.Request, a actor) bool {
	if h.certs == nil {
		h.renderSettings(w, r, a, http.StatusConflict, nil, "", "This node serves plain HTTP: HTTPS needs a real --domain (and no --insecure-http).")
		return false
	}
	if !a.user.Owner {
		h.failPage(w, r, fmt.Errorf("%w: only the node's owner sets up its certificate", erg.ErrForbidden))
		return false
	}
	return true
}

// setACME takes the provider, the account's address and the provider's
// settings (NAME=VALUE lines) and switches the node to ACME. A setting
// left empty keeps its saved value, so the page never has to show one.
func (h *Handler) setACME(w http.ResponseWriter, r *http.Request, a actor) {
	if !h.tlsOwner(w, r, a) {
		return
	}
	cfg := tlsnode.ACMEConfig{
		Provider:    strings.TrimSpace(r.PostFormValue("provider")),
		Email:       strings.TrimSpace(r.PostFormValue("email")),
		Directory:   strings.TrimSpace(r.PostFormValue("directory")),
		Credentials: map[string]string{},
	}
	old := h.certs.SavedACME()
	for line := range strings.Lines(r.PostFormValue("settings")) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			h.renderSettings(w, r, a, http.StatusBadRequest, nil, "", fmt.Sprintf("%q is not NAME=VALUE.", line))
			return
		}
		if v == "" && old != nil && old.Provider == cfg.Provider {
			v = old.Credentials[k]
		}
		cfg.Credentials[k] = v
	}
	if old != nil && old.Provider == cfg.Provider {
		cfg.Resolvers = old.Resolvers
	}
	if err := h.certs.UseACME(cfg); err != nil {
		h.renderSettings(w, r, a, http.StatusBadRequest, nil, "", err.Error())
		return
	}
	h.log.Info("ACME set up on the Settings page", "provider", cfg.Provider, "by", a.user.Username)
	h.renderSettings(w, r, a, http.StatusOK, nil, "Saved. The node is ordering its certificate now; this page shows how it went.", "")
}

func (h *Handler) checkTLS(w http.ResponseWriter, r *http.Request, a actor) {
	if !h.tlsOwner(w, r, a) {
		return
	}
	h.certs.Kick()
	h.renderSettings(w, r, a, http.StatusOK, nil, "Checking the certificate now (renewing it if it is due); reload this page to see the result.", "")
}
