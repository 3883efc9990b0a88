package node

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"erg"
)

// fedProcess is an `erg run` with a node name, the test apps, and p2p on
// loopback, that can be restarted with the same data.
type fedProcess struct {
	*ergProcess
	args []string
	name string
}

func startFedProcess(t *testing.T, name, owner string, bootstrap []string) *fedProcess {
	t.Helper()
	p := &fedProcess{ergProcess: &ergProcess{t: t, bin: ergBinary(t), data: filepath.Join(t.TempDir(), name)}, name: name}
	p.args = []string{"run", "--data", p.data, "--listen", "127.0.0.1:0", "--apps", testApps(t), "--owner", owner, "--name", name,
		"--p2p-listen", "/ip4/127.0.0.1/tcp/0"}
	for _, b := range bootstrap {
		p.args = append(p.args, "--bootstrap", b)
	}
	p.run()
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	return p
}

func (p *fedProcess) run() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.t.Log(p.name+":", sc.Text())
		}
	}()
	c := erg.NewClient(SocketPath(p.data))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("erg run %s did not start", p.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *fedProcess) client() *erg.Client { return erg.NewClient(SocketPath(p.data)) }

// browser returns a client that reaches every host at the node's web
// port, with a cookie jar as a browser has.
func (p *fedProcess) browser() *http.Client {
	st := p.status()
	addr := strings.TrimPrefix(st.URL, "http://localhost")
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar: localhostJar{jar},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", "127.0.0.1"+addr)
		}},
		Timeout: 30 * time.Second,
	}
}

// openShared finds the grain shared with the node's owner titled title,
// signs c in to it and returns its origin on this node.
func (p *fedProcess) openShared(c *http.Client, title string) (id, origin string) {
	p.t.Helper()
	var gs []erg.Grain
	if err := json.Unmarshal([]byte(p.erg(false, "grain", "ls", "--json")), &gs); err != nil {
		p.t.Fatal(err)
	}
	for _, g := range gs {
		if g.Title == title && g.From != "" {
			id = g.ID
		}
	}
	if id == "" {
		p.t.Fatalf("%s has no shared grain %q: %+v", p.name, title, gs)
	}
	g, err := p.client().OpenGrain(context.Background(), id)
	if err != nil {
		p.t.Fatal(err)
	}
	resp, err := c.Get(g.URL)
	if err != nil || resp.StatusCode != 200 {
		p.t.Fatalf("login on %s: %v %v", p.name, err, resp)
	}
	resp.Body.Close()
	origin, _, _ = strings.Cut(g.URL, "/_erg/")
	return id, origin
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func friendOnline(p *fedProcess, name string) bool {
	fs, err := p.client().Friends(context.Background())
	if err != nil {
		return false
	}
	for _, f := range fs {
		if f.Name == name {
			return f.Online
		}
	}
	return false
}

// TestFederationBetweenProcesses runs four nodes as separate processes:
// A shares a note with B (editor) and C (viewer); D is no one's friend.
func TestFederationBetweenProcesses(t *testing.T) {
	ctx := context.Background()
	a := startFedProcess(t, "anode", "alice", nil)
	if out := a.erg(false, "status"); !strings.Contains(out, "name      anode") {
		t.Errorf("status:\n%s", out)
	}
	boot := a.status().P2PAddrs[:1]
	b := startFedProcess(t, "bnode", "bob", boot)
	c := startFedProcess(t, "cnode", "carol", boot)
	d := startFedProcess(t, "dnode", "dan", boot)

	for _, f := range []*fedProcess{b, c} {
		code := strings.TrimSpace(lastLine(a.erg(false, "friend", "invite")))
		if out := f.erg(false, "friend", "add", code); !strings.Contains(out, "now friends with anode") {
			t.Fatalf("friend add on %s: %s", f.name, out)
		}
		if f == c {
			// The code was spent: the stranger cannot use it again.
			if out := d.erg(true, "friend", "add", code); !strings.Contains(out, "unknown, used or expired") {
				t.Errorf("a spent invite on dnode says: %s", out)
			}
		}
	}
	if out := a.erg(false, "friend", "ls"); !strings.Contains(out, "bnode") || !strings.Contains(out, "cnode") || strings.Contains(out, "dnode") {
		t.Errorf("friend ls on anode:\n%s", out)
	}
	if out := b.erg(false, "friend", "ls"); !strings.Contains(out, "anode  online") {
		t.Errorf("friend ls on bnode:\n%s", out)
	}

	var g erg.Grain
	json.Unmarshal([]byte(a.erg(false, "grain", "new", "notes", "--title", "Plans", "--json")), &g)
	var shB erg.Share
	json.Unmarshal([]byte(a.erg(false, "share", "new", g.ID, "--friend", "bnode", "--role", "editor", "--json")), &shB)
	if out := a.erg(true, "share", "new", g.ID, "--friend", "cnode", "--user", "nobody", "--role", "viewer"); !strings.Contains(out, `no user "nobody"`) {
		t.Errorf("a share for a missing user on cnode says: %s", out)
	}
	a.erg(false, "share", "new", g.ID, "--friend", "cnode", "--user", "carol", "--role", "viewer")
	if out := a.erg(false, "share", "ls", g.ID); !strings.Contains(out, "node bnode") || !strings.Contains(out, "carol@cnode") {
		t.Errorf("share ls on anode:\n%s", out)
	}
	if out := b.erg(false, "grain", "ls"); !strings.Contains(out, "Plans") {
		t.Errorf("grain ls on bnode:\n%s", out)
	}

	bc, cc := b.browser(), c.browser()
	bID, bOrigin := b.openShared(bc, "Plans")
	_, cOrigin := c.openShared(cc, "Plans")

	// B writes, as bob@bnode; C reads and cannot write.
	code, body := putNote(t, bc, bOrigin, "from bob", 0)
	if code != 200 || !strings.Contains(body, `"updatedBy":"bob@bnode"`) {
		t.Fatalf("bob's edit through bnode: %d %s", code, body)
	}
	if code, body := get(t, cc, cOrigin+"/api/note"); code != 200 || !strings.Contains(body, "from bob") {
		t.Errorf("carol reads through cnode: %d %s", code, body)
	}
	if code, body := putNote(t, cc, cOrigin, "from carol", 1); code != http.StatusForbidden {
		t.Errorf("carol, a viewer, wrote: %d %s", code, body)
	}

	// B's websocket is open when A revokes B's share: it ends within a
	// second, and B says why from then on.
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(bOrigin, "http")+"/ws", &websocket.DialOptions{HTTPClient: bc})
	if err != nil {
		t.Fatalf("websocket through bnode: %v", err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil {
		t.Fatal(err)
	}
	a.erg(false, "share", "rm", shB.ID)
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, _, err := ws.Read(rctx); err == nil || rctx.Err() != nil {
		t.Errorf("bnode's websocket after revocation: %v (deadline: %v)", err, rctx.Err())
	}
	if code, body := get(t, bc, bOrigin+"/api/note"); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Errorf("bnode after revocation: %d %s", code, body)
	}
	if _, err := b.client().OpenGrain(ctx, bID); err == nil || !strings.Contains(err.Error(), "the owner revoked this share") {
		t.Errorf("opening the revoked grain on bnode: %v", err)
	}

	// A restarts on another port: C reconnects and restores by itself.
	a.stop(syscall.SIGTERM)
	a.run()
	deadline := time.Now().Add(20 * time.Second)
	for !friendOnline(c, "anode") {
		if time.Now().After(deadline) {
			t.Fatal("cnode never saw anode again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get(t, cc, cOrigin+"/api/note"); code != 200 || !strings.Contains(body, "from bob") {
		t.Errorf("carol after anode restarted: %d %s", code, body)
	}
	if code, _ := putNote(t, cc, cOrigin, "from carol", 1); code != http.StatusForbidden {
		t.Errorf("carol wrote after the restart: %d", code)
	}
	// D is no one's friend: it has no shares and A lists it nowhere.
	if out := d.erg(false, "grain", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("dnode's grains: %s", out)
	}
	if out := d.erg(false, "friend", "ls"); !strings.Contains(out, "no friends") {
		t.Errorf("dnode's friends: %s", out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
