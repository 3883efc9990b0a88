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
	"sync"
	"time"

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
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		// An answer of any status: /status?code=502 is the app's own.
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		http.Error(w, "echo answers "+strconv.Itoa(code), code)
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
	mux.HandleFunc("/churn", func(w http.ResponseWriter, r *http.Request) {
		churnOnce.Do(func() { go churn() })
		fmt.Fprint(w, churnState())
	})
	mux.HandleFunc("/churn/state", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, churnState())
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
	mux.HandleFunc("/fill", func(w http.ResponseWriter, r *http.Request) {
		// mb MiB into /var/fill, synced: how a grain fills its disk.
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		f, err := os.Create("/var/fill")
		for i := 0; err == nil && i < mb; i++ {
			_, err = f.Write(make([]byte, 1<<20))
		}
		if err == nil {
			err = f.Sync()
		}
		if f != nil {
			f.Close()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInsufficientStorage)
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

var (
	churnOnce sync.Once
	// churnMu keeps the app's own reads of its records (/churn/state)
	// from seeing one half written; a backup does not take it.
	churnMu sync.Mutex
)

// churnSize is the size of /var/churn-data: big enough that copying it
// while churn rewrites it would catch a write half done.
const churnSize = 1 << 20

// churn writes numbered records until the app ends: record i rewrites
// all of /var/churn-data with i in place, then sets /var/churn-count to
// i. Any instant of this leaves the data file all one record j and the
// counter at j or j-1; a copy taken while it runs (not frozen) shows a
// data file of mixed records, or a counter that does not match it.
func churn() {
	// Both are written in place with one write each (no truncate), so
	// every instant between two syscalls is a state the checks accept.
	f, err := os.OpenFile("/var/churn-data", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo: churn:", err)
		return
	}
	cf, err := os.OpenFile("/var/churn-count", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo: churn:", err)
		return
	}
	buf := make([]byte, churnSize)
	for i := 1; ; i++ {
		rec := fmt.Appendf(nil, "%015d\n", i)
		for off := 0; off < len(buf); off += len(rec) {
			copy(buf[off:], rec)
		}
		churnMu.Lock()
		_, err := f.WriteAt(buf, 0)
		if err == nil {
			_, err = cf.WriteAt(rec, 0)
		}
		churnMu.Unlock()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo: churn:", err)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// churnState checks what churn left in /var: "ok N" with the counter
// ("ok 0" when frozen between the first two writes), "none" before any
// record, or what is wrong.
func churnState() string {
	churnMu.Lock()
	defer churnMu.Unlock()
	data, err := os.ReadFile("/var/churn-data")
	if os.IsNotExist(err) || err == nil && len(data) == 0 {
		return "none" // not yet made, or made and not yet written
	}
	if err != nil {
		return err.Error()
	}
	if len(data) != churnSize {
		return fmt.Sprintf("torn: data is %d bytes", len(data))
	}
	rec := data[:16]
	for off := 0; off < len(data); off += len(rec) {
		if !bytes.Equal(data[off:off+len(rec)], rec) {
			return fmt.Sprintf("torn: record %q at 0, %q at %d", rec, data[off:off+len(rec)], off)
		}
	}
	j, _ := strconv.Atoi(strings.TrimSpace(string(rec)))
	count, err := os.ReadFile("/var/churn-count")
	if err != nil {
		return "torn: no counter: " + err.Error()
	}
	c, _ := strconv.Atoi(strings.TrimSpace(string(count)))
	if c != j && c != j-1 {
		return fmt.Sprintf("torn: data holds record %d, the counter says %d", j, c)
	}
	return fmt.Sprint("ok ", c)
}

var filler = bytes.Repeat([]byte("0123456789abcdef"), 4<<10)

// countStart counts this grain's starts in /var, so tests can tell a
// restarted app from the same one.
func countStart() {
	data, _ := os.ReadFile("/var/starts")
	startCount, _ = strconv.Atoi(string(data))
	startCount++
	os.WriteFile("/var/starts", []byte(strconv.Itoa(startCount)), 0o600)
}
