package webui

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"erg"
)

func (h *Handler) root(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.webActor(r); ok {
		http.Redirect(w, r, "/grains", http.StatusSeeOther)
		return
	}
	if need, err := h.acc.SetupNeeded(r.Context()); err == nil && need {
		h.render(w, r, http.StatusUnauthorized, "welcome", pageData{Title: "Welcome"})
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (h *Handler) setupPage(w http.ResponseWriter, r *http.Request) {
	need, err := h.acc.SetupNeeded(r.Context())
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	if !need {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	owner, _ := h.acc.Owner(r.Context())
	h.render(w, r, http.StatusOK, "setup", pageData{Title: "Set up your node", Data: map[string]any{
		"Token": r.URL.Query().Get("token"), "Username": owner.Username}})
}

func (h *Handler) setup(w http.ResponseWriter, r *http.Request) {
	if err := h.checkOrigin(r); err != nil {
		h.failPage(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, erg.MaxAPIBody)
	token, username, password := r.PostFormValue("token"), r.PostFormValue("username"), r.PostFormValue("password")
	fail := func(err error) {
		h.render(w, r, statusOf(err), "setup", pageData{Title: "Set up your node", Error: erg.Message(err),
			Data: map[string]any{"Token": token, "Username": username}})
	}
	if password != r.PostFormValue("password2") {
		fail(fmt.Errorf("%w: the two passwords differ", erg.ErrInvalid))
		return
	}
	_, session, err := h.acc.Setup(r.Context(), token, username, password)
	if err != nil {
		fail(err)
		return
	}
	h.setSessionCookie(w, r, session)
	http.Redirect(w, r, "/grains", http.StatusSeeOther)
}

// restoreNode is "Restore this node" on the setup page: with the setup
// link's token (so only whoever started the node), before it has an owner.
func (h *Handler) restoreNode(w http.ResponseWriter, r *http.Request) {
	if err := h.checkOrigin(r); err != nil {
		h.failPage(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, erg.MaxAPIBody)
	token := r.PostFormValue("token")
	data := map[string]any{"Token": token}
	if err := h.acc.CheckSetupToken(token); err != nil {
		h.render(w, r, statusOf(err), "setup", pageData{Title: "Set up your node", Error: erg.Message(err), Data: data})
		return
	}
	var friends []string
	if f := strings.TrimSpace(r.PostFormValue("friend")); f != "" {
		friends = []string{f}
	}
	res, err := h.bk.RestorePending(r.Context(), strings.TrimSpace(r.PostFormValue("code")), []string{strings.TrimSpace(r.PostFormValue("dir"))}, friends)
	if err != nil {
		h.render(w, r, http.StatusBadRequest, "setup", pageData{Title: "Set up your node", Error: "Nothing was restored: " + err.Error(), Data: data})
		return
	}
	msg := fmt.Sprintf("Restored the node as it was on %s, with %d grains. Restart erg (stop it, then erg run again) to become it; then sign in as its owner.",
		res.Time.Local().Format("2 Jan 2006 15:04"), res.Grains)
	if len(res.Missing) > 0 {
		msg += fmt.Sprintf(" %d grains could not be read back: %s", len(res.Missing), strings.Join(res.Missing, "; "))
	}
	h.render(w, r, http.StatusOK, "setup", pageData{Title: "Node restored", Notice: msg, Data: map[string]any{"Done": true}})
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.webActor(r); ok {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, "login", pageData{Title: "Sign in", Data: map[string]string{"Next": r.URL.Query().Get("next")}})
}

func (h *Handler) loginPost(w http.ResponseWriter, r *http.Request) {
	if err := h.checkOrigin(r); err != nil {
		h.failPage(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, erg.MaxAPIBody)
	username, password, next := r.PostFormValue("username"), r.PostFormValue("password"), r.PostFormValue("next")
	data := map[string]string{"Next": next, "Username": username}
	ip := clientIP(r)
	if ok, wait := h.limiter.allow(ip, username); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		h.render(w, r, http.StatusTooManyRequests, "login", pageData{Title: "Sign in", Data: data,
			Error: fmt.Sprintf("Too many failed sign-ins. Try again in %d minutes.", int(wait.Minutes())+1)})
		return
	}
	_, session, err := h.acc.Login(r.Context(), username, password)
	if err != nil {
		if errors.Is(err, erg.ErrUnauthorized) {
			// allow has counted the attempt already.
			h.render(w, r, http.StatusUnauthorized, "login", pageData{Title: "Sign in", Data: data, Error: "Wrong username or password."})
			return
		}
		h.failPage(w, r, err)
		return
	}
	h.limiter.succeeded(ip, username)
	h.setSessionCookie(w, r, session)
	http.Redirect(w, r, localPath(next), http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, a actor) {
	if c, err := r.Cookie(h.sessionCookieName(r)); err == nil {
		h.acc.Logout(r.Context(), c.Value)
	}
	h.clearSessionCookie(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (h *Handler) invitePage(w http.ResponseWriter, r *http.Request) {
	inv, err := h.acc.InviteInfo(r.Context(), r.PathValue("token"))
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "invite", pageData{Title: "Join", Data: inv})
}

func (h *Handler) acceptInvite(w http.ResponseWriter, r *http.Request) {
	if err := h.checkOrigin(r); err != nil {
		h.failPage(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, erg.MaxAPIBody)
	token := r.PathValue("token")
	inv, err := h.acc.InviteInfo(r.Context(), token)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	password := r.PostFormValue("password")
	if password != r.PostFormValue("password2") {
		h.render(w, r, http.StatusBadRequest, "invite", pageData{Title: "Join", Data: inv, Error: "The two passwords differ."})
		return
	}
	_, session, err := h.acc.AcceptInvite(r.Context(), token, password)
	if err != nil {
		if errors.Is(err, erg.ErrInvalid) {
			h.render(w, r, http.StatusBadRequest, "invite", pageData{Title: "Join", Data: inv, Error: erg.Message(err)})
			return
		}
		h.failPage(w, r, err)
		return
	}
	h.setSessionCookie(w, r, session)
	http.Redirect(w, r, "/grains", http.StatusSeeOther)
}

// settingsData is what the settings page shows.
type settingsData struct {
	Tokens []erg.APIToken
	New    *erg.APIToken
	TLS    *tlsSettings // the owner's, when the node serves HTTPS
}

func (h *Handler) settingsPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderSettings(w, r, a, http.StatusOK, nil, "", "")
}

func (h *Handler) renderSettings(w http.ResponseWriter, r *http.Request, a actor, code int, tok *erg.APIToken, notice, errMsg string) {
	tokens, err := h.acc.APITokens(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, code, "settings", pageData{Title: "Settings", Nav: "settings", Data: settingsData{Tokens: tokens, New: tok, TLS: h.tlsSettings(r, a)},
		Notice: notice, Error: errMsg})
}

func (h *Handler) changePassword(w http.ResponseWriter, r *http.Request, a actor) {
	password := r.PostFormValue("password")
	if password != r.PostFormValue("password2") {
		h.renderSettings(w, r, a, http.StatusBadRequest, nil, "", "The two new passwords differ.")
		return
	}
	session, err := h.acc.ChangePassword(r.Context(), a.user, r.PostFormValue("current"), password)
	if errors.Is(err, erg.ErrInvalid) || errors.Is(err, erg.ErrForbidden) {
		h.renderSettings(w, r, a, statusOf(err), nil, "", erg.Message(err))
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.setSessionCookie(w, r, session)
	// The old session, and with it the page's CSRF token, is gone.
	u, csrf, err := h.acc.WebSession(r.Context(), session)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	r = withActor(r, actor{user: u, csrf: csrf})
	h.renderSettings(w, r, actor{user: u, csrf: csrf}, http.StatusOK, nil, "Your password is changed; other devices are signed out.", "")
}

func (h *Handler) newToken(w http.ResponseWriter, r *http.Request, a actor) {
	tok, err := h.acc.NewAPIToken(r.Context(), a.user, r.PostFormValue("label"))
	if errors.Is(err, erg.ErrInvalid) {
		h.renderSettings(w, r, a, http.StatusBadRequest, nil, "", erg.Message(err))
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.renderSettings(w, r, a, http.StatusCreated, &tok, "", "")
}

func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.acc.RemoveAPIToken(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/settings", http.StatusSeeOther)
}
