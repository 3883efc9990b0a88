package node

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"erg"
	"erg/apppkg"
)

// ergProcess is an `erg run` started as its own process.
type ergProcess struct {
	t    *testing.T
	bin  string
	data string
	cmd  *exec.Cmd
}

func ergBinary(t *testing.T) string {
	return goBuild(t, "./cmd/erg", filepath.Join(sharedBuildDir(t), "bin", "erg"))
}

// startErg runs `erg run` on a free port and waits until its socket answers.
func startErg(t *testing.T, data string) *ergProcess {
	t.Helper()
	p := &ergProcess{t: t, bin: ergBinary(t), data: data}
	p.start()
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	return p
}

func (p *ergProcess) start() {
	p.t.Helper()
	apps := testApps(p.t)
	p.cmd = exec.Command(p.bin, "run", "--data", p.data, "--listen", "127.0.0.1:0", "--apps", apps, "--owner", "alice")
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.t.Log("erg:", sc.Text())
		}
	}()
	c := erg.NewClient(SocketPath(p.data))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatal("erg run did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *ergProcess) stop(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-done
		p.t.Errorf("erg run did not exit on %v", sig)
	}
	p.cmd = nil
}

// erg runs a client command and returns its stdout; it fails the test if
// the command fails, unless wantErr.
func (p *ergProcess) erg(wantErr bool, args ...string) string {
	p.t.Helper()
	cmd := exec.Command(p.bin, append([]string{"--data", p.data}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if (err != nil) != wantErr {
		p.t.Fatalf("erg %s: err=%v stderr=%s", strings.Join(args, " "), err, stderr.String())
	}
	if wantErr {
		return stderr.String()
	}
	return string(out)
}

func TestCLIAgainstARunningNode(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := startErg(t, data)

	if out := p.erg(false, "status"); !strings.Contains(out, "sandbox") || !strings.Contains(out, "notes") {
		t.Errorf("status:\n%s", out)
	}
	var g erg.Grain
	if err := json.Unmarshal([]byte(p.erg(false, "grain", "new", "notes", "--title", "Groceries", "--json")), &g); err != nil {
		t.Fatal(err)
	}
	if g.Title != "Groceries" || !strings.Contains(g.URL, "token=") {
		t.Errorf("grain new --json = %+v", g)
	}
	if out := p.erg(false, "grain", "ls"); !strings.Contains(out, g.ID) || !strings.Contains(out, "Groceries") {
		t.Errorf("grain ls:\n%s", out)
	}
	if out := p.erg(false, "grain", "open", g.ID); !strings.Contains(out, "g-"+g.ID) {
		t.Errorf("grain open: %s", out)
	}
	if out := p.erg(true, "grain", "new", "nosuchapp"); !strings.Contains(out, `no app "nosuchapp"`) {
		t.Errorf("grain new of a missing app says: %s", out)
	}
	p.erg(false, "grain", "rm", g.ID)
	if out := p.erg(false, "grain", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("grain ls after rm: %s", out)
	}
	if out := p.erg(true, "grain", "rm", g.ID); !strings.Contains(out, "no grain") {
		t.Errorf("rm of a removed grain says: %s", out)
	}
	key, _ := apppkg.GenerateKey()
	pkgFile := filepath.Join(t.TempDir(), "echo.erg")
	os.WriteFile(pkgFile, packEcho(t, key, 1), 0o644)
	if out := p.erg(false, "app", "install", pkgFile); !strings.Contains(out, "installed Echo") {
		t.Errorf("app install: %s", out)
	}
	if out := p.erg(true, "app", "install", pkgFile); !strings.Contains(out, "not newer") {
		t.Errorf("installing the same version again says: %s", out)
	}
	if out := p.erg(false, "app", "ls"); !strings.Contains(out, apppkg.AppID(key.Public().(ed25519.PublicKey))) {
		t.Errorf("app ls:\n%s", out)
	}

	p.stop(syscall.SIGTERM)
	if out := p.erg(true, "status"); !strings.Contains(out, "erg run") {
		t.Errorf("status without a node says: %s", out)
	}
	if fi, err := os.Stat(filepath.Join(data, "identity.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity.key: %v %v", fi.Mode(), err)
	}
}

func TestKillingTheNodeLosesNoCommittedMetadata(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := startErg(t, data)
	c := erg.NewClient(SocketPath(data))

	var mu sync.Mutex
	var acked []string
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				g, err := c.NewGrain(ctx, "echo", "")
				if err != nil {
					return // the node died under us
				}
				mu.Lock()
				acked = append(acked, g.ID)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	p.stop(syscall.SIGKILL)
	cancel()
	wg.Wait()
	if len(acked) < 5 {
		t.Fatalf("only %d grains created before the kill", len(acked))
	}

	db, err := openDB(context.Background(), filepath.Join(data, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	var check string
	db.QueryRow("PRAGMA integrity_check").Scan(&check)
	db.Close()
	if check != "ok" {
		t.Fatalf("integrity_check after SIGKILL: %s", check)
	}

	p.start()
	gs, err := c.Grains(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, g := range gs {
		have[g.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("grain %s was acknowledged but is gone after SIGKILL", id)
		}
	}
	t.Logf("%d grains acknowledged before SIGKILL, all present", len(acked))
}
