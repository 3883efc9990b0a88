package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"erg"
	"erg/internal/testkit"
)

func TestGrainStartsOnFirstRequestAndKeepsData(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	g, err := n.grains.NewGrain(context.Background(), n.owner(), "echo", "")
	if err != nil {
		t.Fatal(err)
	}
	id, origin := g.ID, strings.Split(g.URL, "/_erg/")[0]
	if n.grains.Running(id) {
		t.Fatal("grain runs before any request")
	}
	// The login link redirects to the grain's root page.
	if code, body := n.get(g.URL); code != 200 || !strings.Contains(body, "hello from echo") {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if !n.grains.Running(id) {
		t.Fatal("grain not running after a request")
	}
	if code, _ := n.get(origin + "/write?v=kept"); code != 200 {
		t.Fatalf("write: %d", code)
	}
	if err := n.grains.Stop(context.Background(), id, "test"); err != nil {
		t.Fatal(err)
	}
	if code, body := n.get(origin + "/read"); code != 200 || body != "kept" {
		t.Fatalf("after restart read = %d %q", code, body)
	}
}

func TestConcurrentFirstRequestsShareOneStart(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	// Signing in opened the grain once; stop it so every request below is
	// a first request to a stopped grain.
	if err := n.grains.Stop(context.Background(), id, "test"); err != nil {
		t.Fatal(err)
	}
	startsBefore := n.grains.Starts()
	const clients = 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := n.http.Get(origin + "/pid")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var b [16]byte
			k, _ := resp.Body.Read(b[:])
			if resp.StatusCode != 200 || string(b[:k]) != "2" { // the second start of this grain
				errs <- errors.New(resp.Status + " start " + string(b[:k]))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request: %v", err)
	}
	if got := n.grains.Starts() - startsBefore; got != 1 {
		t.Errorf("50 first requests started the grain %d times, want 1", got)
	}
}

func TestIdleGrainStopsAndFreesItsCgroup(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.GrainIdle = 300 * time.Millisecond })
	id, origin := n.newGrain("echo")
	n.get(origin + "/")
	sb := n.grains.SandboxOf(id)
	if sb == nil {
		t.Fatal("grain not running")
	}
	cgroups := sb.CgroupPaths()
	waitFor(t, 5*time.Second, "idle stop", func() bool { return !n.grains.Running(id) })
	<-sb.Done()
	waitFor(t, 5*time.Second, "cgroup removal", func() bool {
		for _, p := range cgroups {
			if _, err := os.Stat(p); err == nil {
				return false
			}
		}
		return true
	})
	if n.runner.Cgroups() != "none" && len(cgroups) == 0 {
		t.Errorf("cgroups are %s but the grain had no cgroup", n.runner.Cgroups())
	}
}

func TestOpenWebsocketKeepsGrainAwake(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.GrainIdle = 200 * time.Millisecond })
	id, origin := n.newGrain("echo")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := n.dialWS(ctx, origin+"/ws")
	// Not an await: the grain must outlive four idle periods.
	time.Sleep(800 * time.Millisecond)
	if !n.grains.Running(id) {
		t.Fatal("grain stopped while a websocket was open")
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
		t.Fatalf("echo over websocket = %q, %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, "idle stop after websocket closed", func() bool { return !n.grains.Running(id) })
}

func (n *testNode) dialWS(ctx context.Context, url string) *websocket.Conn {
	n.t.Helper()
	ws, resp, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1), &websocket.DialOptions{HTTPClient: n.http})
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		n.t.Fatalf("websocket %s: %v %s", url, err, status)
	}
	return ws
}

func TestCrashedAppRestartsOnNextRequest(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	n.get(origin + "/say?msg=before-crash")
	if code, _ := n.get(origin + "/crash"); code != http.StatusBadGateway {
		t.Errorf("crashing request = %d, want 502", code)
	}
	waitFor(t, 5*time.Second, "crash noticed", func() bool { return !n.grains.Running(id) })
	if code, body := n.get(origin + "/pid"); code != 200 || body != "2" {
		t.Fatalf("after crash /pid = %d %q, want a second start", code, body)
	}
	log, err := n.grains.Log(context.Background(), n.owner(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"before-crash", "echo: crashing on request", "grain exited"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("grain log lacks %q:\n%s", want, log)
		}
	}
}

func TestNodeRestartKeepsGrainsAndData(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	n.get(origin + "/write?v=survives")
	cfg := n.cfg
	addrs := n.P2PAddrs()
	n.Close()

	n2 := startNode(t, func(c *Config) { c.DataDir = cfg.DataDir })
	// Friends stored the node's libp2p addresses: they must still work.
	if got := n2.P2PAddrs(); strings.Join(got, " ") != strings.Join(addrs, " ") {
		t.Errorf("libp2p addresses after restart = %v, want %v", got, addrs)
	}
	gs, err := n2.Grains(context.Background(), n2.owner())
	if err != nil || len(gs) != 1 || gs[0].ID != id {
		t.Fatalf("grains after restart = %+v, %v", gs, err)
	}
	g, err := n2.OpenGrain(context.Background(), n2.owner(), id)
	if err != nil {
		t.Fatal(err)
	}
	n2.get(g.URL)
	origin2, _, _ := strings.Cut(g.URL, "/_erg/")
	if code, body := n2.get(origin2 + "/read"); code != 200 || body != "survives" {
		t.Fatalf("after node restart read = %d %q", code, body)
	}
}

func TestRemoveGrainDeletesEverything(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	n.get(origin + "/write?v=x")
	if err := n.grains.RemoveGrain(context.Background(), n.owner(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.grains.Dir(id)); !os.IsNotExist(err) {
		t.Errorf("grain dir still there: %v", err)
	}
	if code, _ := n.get(origin + "/"); code != http.StatusNotFound {
		t.Errorf("removed grain answers %d, want 404", code)
	}
	if err := n.grains.RemoveGrain(context.Background(), n.owner(), id); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("second remove = %v, want not found", err)
	}
}

func TestNotesLiveUpdatesThroughProxy(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, origin := n.newGrain("notes")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := n.dialWS(ctx, origin+"/ws")
	b := n.dialWS(ctx, origin+"/ws")
	defer a.CloseNow()
	defer b.CloseNow()
	edit, _ := json.Marshal(map[string]any{"type": "edit", "title": "t", "text": "hello from a", "baseVersion": 0})
	if err := a.Write(ctx, websocket.MessageText, edit); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := b.Read(ctx)
		if err != nil {
			t.Fatalf("tab b got no update: %v", err)
		}
		var note struct {
			Type, Text, UpdatedBy string
		}
		json.Unmarshal(msg, &note)
		if note.Type == "note" && note.Text == "hello from a" {
			if note.UpdatedBy != "alice" {
				t.Errorf("updatedBy = %q, want the owner alice", note.UpdatedBy)
			}
			break
		}
	}
	a.CloseNow()
	b.CloseNow()

	// The note outlives its sandbox and the node.
	if err := n.grains.Stop(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	if code, body := n.get(origin + "/api/note"); code != 200 || !strings.Contains(body, "hello from a") {
		t.Fatalf("after grain restart: %d %s", code, body)
	}
	dataDir := n.cfg.DataDir
	n.Close()
	n2 := startNode(t, func(c *Config) { c.DataDir = dataDir })
	g, err := n2.OpenGrain(ctx, n2.owner(), id)
	if err != nil {
		t.Fatal(err)
	}
	n2.get(g.URL)
	if code, body := n2.get(strings.Split(g.URL, "/_erg/")[0] + "/api/note"); code != 200 || !strings.Contains(body, "hello from a") {
		t.Fatalf("after node restart: %d %s", code, body)
	}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.AwaitFor(t, d, what, cond)
}

func TestSampleAppsRunInGrains(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	for _, app := range []string{"notes", "todo", "filedrop"} {
		_, origin := n.newGrain(app)
		if code, body := n.get(origin + "/"); code != 200 || !strings.Contains(body, "<html") {
			t.Errorf("%s: GET / = %d %.80q", app, code, body)
		}
	}
	_, origin := n.newGrain("todo")
	req, _ := http.NewRequest("POST", origin+"/api/items", strings.NewReader(`{"text":"buy milk","assignee":"alice"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("todo: add an item assigned to the owner: %s", resp.Status)
	}
	if code, body := n.get(origin + "/api/items?mine=1"); code != 200 || !strings.Contains(body, "buy milk") {
		t.Errorf("todo: my items = %d %s", code, body)
	}
}
