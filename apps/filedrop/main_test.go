package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryStopsOnSIGTERM builds the app as the node runs it, uploads a
// file, and checks that SIGTERM makes it exit 0 with the file in place.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "filedrop")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	port := freePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "ERG_VAR="+dir, "FILEDROP_MAX_MB=1")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	waitServing(t, base+"/")
	ct, body := form(part{name: "kept.txt", body: strings.NewReader("kept across exit")})
	if resp, b := do(t, alice, "POST", base+"/upload", ct, body); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	// FILEDROP_MAX_MB=1 is in force.
	ct, body = form(part{name: "big.bin", body: strings.NewReader(strings.Repeat("x", 1<<20+1))})
	if resp, _ := do(t, alice, "POST", base+"/upload", ct, body); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("upload over FILEDROP_MAX_MB: %d", resp.StatusCode)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", exitErr, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after SIGTERM\n%s", logs.String())
	}

	if got, want := dataFiles(t, dir), []string{"files", "files/kept.txt"}; !slices.Equal(got, want) {
		t.Errorf("after exit the data dir holds %v, want %v", got, want)
	}
}

func TestBadEnvironment(t *testing.T) {
	for _, env := range []map[string]string{
		{"PORT": "http"},
		{"PORT": "70000"},
		{"FILEDROP_MAX_MB": "lots"},
		{"FILEDROP_MAX_MB": "0"},
		{"FILEDROP_MAX_MB": "-5"},
	} {
		env["ERG_VAR"] = t.TempDir()
		if err := run(t.Context(), nil, func(k string) string { return env[k] }); err == nil {
			t.Errorf("run accepted %v", env)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitServing(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = alice.header()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
