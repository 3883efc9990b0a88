// Package appkit is what erg's sample apps share: reading the settings the
// node passes in the environment, serving on the sandbox's loopback with a
// graceful stop on SIGTERM, the identity the node's proxy asserts, and
// crash-safe JSON files in /var.
package appkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ShutdownTimeout bounds how long a stopping app waits for its requests.
const ShutdownTimeout = 5 * time.Second

// Env is what the node tells every app: the loopback port to listen on
// (PORT, default 8000) and the data directory (ERG_VAR, default /var).
type Env struct {
	Port int
	Dir  string
}

// ReadEnv reads Env through getenv (os.Getenv, or a map in tests).
func ReadEnv(getenv func(string) string) (Env, error) {
	e := Env{Port: 8000, Dir: getenv("ERG_VAR")}
	if p := getenv("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Env{}, fmt.Errorf("PORT=%q is not a port number", p)
		}
		e.Port = n
	}
	if e.Dir == "" {
		e.Dir = "/var"
	}
	return e, nil
}

// Main is an app's main: it runs run with the process's logger and
// environment until SIGTERM or an interrupt, and exits 1 if run fails.
func Main(name string, run func(ctx context.Context, log *slog.Logger, getenv func(string) string) error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, log, os.Getenv); err != nil {
		log.Error(name, "err", err)
		stop()
		os.Exit(1)
	}
}

// Serve serves h on 127.0.0.1:port until ctx is done, then stops taking
// connections, waits up to ShutdownTimeout for requests, and calls
// closeApp (if not nil) to end what Shutdown does not track, such as
// websockets.
func Serve(ctx context.Context, log *slog.Logger, e Env, h http.Handler, closeApp func(context.Context) error) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(e.Port)))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "dir", e.Dir)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if closeApp != nil {
		err = errors.Join(err, closeApp(sctx))
	}
	if e := <-served; !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}

// Identity is who is making a request, as told by the node's proxy, which
// authenticates the user and is the only way a request reaches the app.
type Identity struct {
	Username string // empty for an anonymous visitor
	CanRead  bool
	CanWrite bool
}

// IdentityOf reads the identity headers of r.
func IdentityOf(r *http.Request) Identity {
	id := Identity{Username: r.Header.Get("X-Erg-Username")}
	for p := range strings.SplitSeq(r.Header.Get("X-Erg-Permissions"), ",") {
		switch strings.TrimSpace(p) {
		case "read":
			id.CanRead = true
		case "write":
			id.CanWrite = true
		}
	}
	return id
}

// TempPrefix starts the names of files being written; a file with it
// belongs to a save that did not finish.
const TempPrefix = ".tmp-"

// LoadJSON decodes dir/name into v and removes what unfinished saves left
// in dir. A missing file leaves v as it is; a file that does not decode is
// an error, so an app refuses to start rather than overwrite data it cannot
// read.
func LoadJSON(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read %s: %w", name, err)
	default:
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
		}
	}
	return RemoveTemps(dir)
}

// RemoveTemps removes files left in dir by saves that did not finish.
func RemoveTemps(dir string) error {
	leftovers, err := filepath.Glob(filepath.Join(dir, TempPrefix+"*"))
	if err != nil {
		return err
	}
	for _, name := range leftovers {
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("remove unfinished save: %w", err)
		}
	}
	return nil
}

// SaveJSON replaces dir/name with v atomically: after a crash the file
// holds either the old or the new value, whole.
func SaveJSON(dir, name string, v any) (err error) {
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
