// Todo is one of erg's sample apps: each grain is one shared to-do list.
// Everyone it is shared with can read it; with write permission they can add
// items, tick them done, delete them and assign them to anyone who has
// visited the list. It is a plain HTTP server that runs inside the grain's
// sandbox and trusts the identity headers set by the node's proxy.
//
// Environment: PORT is the loopback port to listen on (default 8000);
// ERG_VAR is the data directory (default /var).
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
		log.Error("todo", "err", err)
		os.Exit(1)
	}
}

// run serves the list until ctx is done, then shuts down gracefully.
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

	s, err := openStore(dir)
	if err != nil {
		return err
	}
	a := newApp(s, log)
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
