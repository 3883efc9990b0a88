// Filedrop is one of erg's sample apps: each grain is one drop box of
// files. Everyone it is shared with can download the files; with write
// permission they can upload and delete them. Uploads are streamed to disk,
// never held in memory. It is a plain HTTP server that runs inside the
// grain's sandbox and trusts the identity headers set by the node's proxy.
//
// Environment: PORT is the loopback port to listen on (default 8000);
// ERG_VAR is the data directory (default /var), whose files/ subdirectory
// holds the files; FILEDROP_MAX_MB is the most one upload may hold, in MiB
// (default 100).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// shutdownTimeout bounds how long a stopping server waits for requests.
const shutdownTimeout = 5 * time.Second

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, log, os.Getenv); err != nil {
		log.Error("filedrop", "err", err)
		os.Exit(1)
	}
}

// run serves the drop box until ctx is done, then shuts down gracefully.
func run(ctx context.Context, log *slog.Logger, getenv func(string) string) error {
	port := 8000
	if p := getenv("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("PORT=%q is not a port number", p)
		}
		port = n
	}
	dir := getenv("ERG_VAR")
	if dir == "" {
		dir = "/var"
	}

	maxMB := int64(100)
	if m := getenv("FILEDROP_MAX_MB"); m != "" {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 1 || n > 1<<20 {
			return fmt.Errorf("FILEDROP_MAX_MB=%q is not a size in MiB between 1 and 1048576", m)
		}
		maxMB = n
	}

	d, err := openDrop(dir)
	if err != nil {
		return err
	}
	defer d.close()
	a := newApp(d, maxMB<<20, log)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "dir", dir)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if e := <-served; !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}
