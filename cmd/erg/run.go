package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"erg/node"
)

func newRunCmd(g *globals) *cobra.Command {
	cfg := node.Config{}
	var verbose bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node: web UI, grain proxy and sandboxes",
		Long: `Run the node in the foreground until interrupted (Ctrl-C or SIGTERM).

On first start it creates the data dir, the node's identity key and its
database. Grains are served on their own origins, g-<id>.localhost:PORT by
default; 'erg grain new APP' prints a link that signs you in.`,
		Example: `  erg run --data ~/erg
  erg run --data ~/erg --apps ./build/apps --listen 127.0.0.1:6080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cfg.DataDir = g.dataDir
			cfg.Version = version
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := node.Start(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "erg node running at %s (data: %s)\n", n.URL(), g.dataDir)
			if setup := n.SetupURL(); setup != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "set up your owner account at:\n  %s\n", setup)
			}
			<-ctx.Done()
			stop()
			fmt.Fprintln(cmd.OutOrStdout(), "stopping: waiting for grains to exit")
			return n.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:6080", "address of the web UI and grains")
	f.StringVar(&cfg.Domain, "domain", "localhost", "grains are served on g-<id>.DOMAIN (a wildcard DNS name pointing here)")
	f.DurationVar(&cfg.GrainIdle, "grain-idle", 5*time.Minute, "stop a grain after this long without requests or websockets")
	f.StringVar(&cfg.AppsDir, "apps", "", "install every app directory (with erg.json) below this dir at start")
	f.StringVar(&cfg.Owner, "owner", "", "the owner's username until the setup page sets one (default $USER)")
	f.StringArrayVar(&cfg.P2PListen, "p2p-listen", nil, "libp2p listen multiaddr (repeatable; default every interface, TCP and QUIC; port 0 is the node's own port, chosen once and kept in the data dir)")
	f.StringVar(&cfg.Name, "name", "", "what this node calls itself to friends (default the owner's username, else the host name)")
	f.StringArrayVar(&cfg.Bootstrap, "bootstrap", nil, "multiaddr with /p2p/<peer id> of a peer to join the DHT through (repeatable)")
	f.StringArrayVar(&cfg.Relays, "relay", nil, "multiaddr with /p2p/<peer id> of a circuit relay (say, on a small rented server) to be reached through when behind NAT (repeatable; reachable friends relay anyway)")
	f.IntVar(&cfg.MaxConns, "max-conns", node.DefaultMaxConns, "most connections open on the web port at once; more are closed at once (-1: no cap)")
	f.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", node.DefaultMaxConnsPerIP, "most connections open from one client address (IPv6: one /64) (-1: no cap)")
	f.IntVar(&cfg.MaxWebsockets, "max-websockets-per-user", node.DefaultMaxWebsockets, "most websockets one user (anonymous visitors: one address) may have open to grains; more get 429 (-1: no cap)")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", node.DefaultIdleTimeout, "close a keep-alive connection idle this long (-1s: use --read-timeout)")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", node.DefaultReadTimeout, "a request must arrive within this, and an upload may stall no longer (-1s: no limit)")
	f.Int64Var(&cfg.MinUploadRate, "min-upload-rate", node.DefaultMinUploadRate, "bytes per second an upload must average; slower ones are cut (-1: no minimum)")
	f.IntVar(&cfg.GrainCPUPercent, "grain-cpu-percent", 0, "CPU ceiling of a grain whose app sets none, in percent of one core (200: two cores); 0: none, grains only share the CPU by weight")
	f.BoolVarP(&verbose, "verbose", "v", false, "log debug detail")
	return cmd
}
