// Command echo is a test app for the node's proxy and lifecycle tests: it
// reports what it received, echoes websocket messages, and crashes or
// writes output on request.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/coder/websocket"
)

func main() {
	port := os.Getenv("PORT")
	fmt.Println("echo: starting on port", port)
	mux := http.NewServeMux()
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		// The app's pid inside its namespace is always small; the start
		// counter in /var tells starts apart.
		fmt.Fprint(w, startCount)
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "echo: crashing on request")
		os.Exit(3)
	})
	mux.HandleFunc("/say", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.URL.Query().Get("msg"))
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		err := os.WriteFile("/var/data", []byte(r.URL.Query().Get("v")), 0o600)
		if err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		data, err := os.ReadFile("/var/data")
		if err != nil {
			http.Error(w, err.Error(), 404)
			return
		}
		w.Write(data)
	})
	mux.HandleFunc("/bridge", func(w http.ResponseWriter, r *http.Request) {
		// Calls the node's bridge as an app's server would:
		// /bridge?method=POST&path=/_erg/claim&auth=TOKEN&body=…
		q := r.URL.Query()
		method := q.Get("method")
		if method == "" {
			method = "GET"
		}
		base := os.Getenv("ERG_BRIDGE_URL")
		if base == "" {
			http.Error(w, "no ERG_BRIDGE_URL", 500)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), method, base+q.Get("path"), strings.NewReader(q.Get("body")))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if a := q.Get("auth"); a != "" {
			req.Header.Set("Authorization", "Bearer "+a)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, "bridge: "+err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("X-Bridge-Status", strconv.Itoa(resp.StatusCode))
		io.Copy(w, resp.Body)
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, data); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		// n bytes with their length: a tiny answer, or a big download.
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "want ?n=<bytes>", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k, err := w.Write(filler[:min(n, int64(len(filler)))])
			if err != nil {
				return
			}
			n -= int64(k)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from echo")
	})
	// Run outside a sandbox (the proxy benchmark's "straight" app), the
	// host's /var is not the app's to write.
	if os.Getenv("ECHO_STATELESS") == "" {
		countStart()
	}
	if err := http.ListenAndServe("127.0.0.1:"+port, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

var startCount int

var filler = bytes.Repeat([]byte("0123456789abcdef"), 4<<10)

// countStart counts this grain's starts in /var, so tests can tell a
// restarted app from the same one.
func countStart() {
	data, _ := os.ReadFile("/var/starts")
	startCount, _ = strconv.Atoi(string(data))
	startCount++
	os.WriteFile("/var/starts", []byte(strconv.Itoa(startCount)), 0o600)
}
