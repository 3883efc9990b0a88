// Notes is erg's sample app: each grain is one note, a title and a text,
// that everyone it is shared with can read and, given write permission,
// edit live together. It is a plain HTTP server that runs inside the
// grain's sandbox and trusts the identity headers set by the node's proxy.
//
// Environment: PORT is the loopback port to listen on (default 8000);
// ERG_VAR is the data directory (default /var).
package main

import (
	"context"
	"log/slog"

	"erg/apps/internal/appkit"
)

func main() { appkit.Main("notes", run) }

// run serves the note until ctx is done, then shuts down gracefully.
func run(ctx context.Context, log *slog.Logger, getenv func(string) string) error {
	env, err := appkit.ReadEnv(getenv)
	if err != nil {
		return err
	}
	s, err := openStore(env.Dir)
	if err != nil {
		return err
	}
	a := newApp(s, log)
	// The app closes the websockets, which Shutdown no longer tracks.
	return appkit.Serve(ctx, log, env, a.handler(), a.close)
}
