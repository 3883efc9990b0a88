package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"erg/apps/internal/appkit/appkittest"
)

// TestBinaryStopsOnSIGTERM builds the app as the node runs it, serves a
// note, and checks that SIGTERM closes its websockets and exits 0.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	app := appkittest.Start(t)
	base, dir, port := app.URL, app.Dir, app.Port
	req, err := http.NewRequest("PUT", base+"/api/note", strings.NewReader(`{"title":"Kept","text":"across exit","baseVersion":0}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = alice.Header()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT: status %d", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://127.0.0.1:"+strconv.Itoa(port)+"/ws", &websocket.DialOptions{HTTPHeader: alice.Header()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil { // the current note
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		read <- err
	}()

	app.Stop(t)
	if err := <-read; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("websocket ended with %v, want status going away", err)
	}

	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.get(); n.Title != "Kept" || n.Version != 1 {
		t.Errorf("after exit the store holds %+v", n)
	}
}
