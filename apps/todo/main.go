// Todo is one of erg's sample apps: each grain is one shared to-do list.
// Everyone it is shared with can read it; with write permission they can add
// items, tick them done, delete them and assign them to anyone who has
// visited the list. It is a plain HTTP server that runs inside the grain's
// sandbox and trusts the identity headers set by the node's proxy.
//
// Environment: PORT is the loopback port to listen on (default 8000);
// ERG_VAR is the data directory (default /var); ERG_BRIDGE_URL is the
// node's bridge, through which the list reaches the file drop linked for
// its attachments (attach.go).
package main

import (
	"context"
	"log/slog"

	"erg/apps/internal/appkit"
)

func main() { appkit.Main("todo", run) }

// run serves the list until ctx is done, then shuts down gracefully.
func run(ctx context.Context, log *slog.Logger, getenv func(string) string) error {
	env, err := appkit.ReadEnv(getenv)
	if err != nil {
		return err
	}
	s, err := openStore(env.Dir)
	if err != nil {
		return err
	}
	at, err := openAttachments(env.Dir, getenv("ERG_BRIDGE_URL"))
	if err != nil {
		return err
	}
	return appkit.Serve(ctx, log, env, newApp(s, at, log).handler(), nil)
}
