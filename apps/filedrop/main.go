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
	"fmt"
	"log/slog"
	"strconv"

	"erg/apps/internal/appkit"
)

func main() { appkit.Main("filedrop", run) }

// run serves the drop box until ctx is done, then shuts down gracefully.
func run(ctx context.Context, log *slog.Logger, getenv func(string) string) error {
	env, err := appkit.ReadEnv(getenv)
	if err != nil {
		return err
	}
	maxMB := int64(100)
	if m := getenv("FILEDROP_MAX_MB"); m != "" {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 1 || n > 1<<20 {
			return fmt.Errorf("FILEDROP_MAX_MB=%q is not a size in MiB between 1 and 1048576", m)
		}
		maxMB = n
	}
	d, err := openDrop(env.Dir)
	if err != nil {
		return err
	}
	defer d.close()
	return appkit.Serve(ctx, log, env, newApp(d, maxMB<<20, log).handler(), nil)
}
