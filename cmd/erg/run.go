package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"erg/node"
	"erg/tlsnode"
)

func newRunCmd(g *globals) *cobra.Command {
	cfg := node.Config{}
	var verbose bool
	var acme tlsnode.ACMEConfig
	var acmeSettings []string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node: web UI, grain proxy and sandboxes",
		Long: `Run the node in the foreground until interrupted (Ctrl-C or SIGTERM).

On first start it creates the data dir, the node's identity key and its
database. Grains are served on their own origins, g-<id>.localhost:PORT by
default; 'erg grain new APP' prints a link that signs you in.

On a real domain (--domain example.org, with example.org and
*.example.org pointing here) the web port serves HTTPS for the node and
every grain with one wildcard certificate, and answers plain HTTP with a
redirect to it. The certificate comes from, in order:
  --tls-cert/--tls-key  files you provide, reloaded when they change;
  --acme-dns PROVIDER   Let's Encrypt (or --acme-directory) through DNS-01,
                        renewed before expiry; the settings are kept 0600 in
                        the data dir, so later starts need no flags;
  otherwise             a CA of the node's own, limited to the domain: each
                        device trusts it once, as http://DOMAIN/ explains.
--insecure-http serves plain HTTP instead, for a TLS proxy of your own.`,
		Example: `  erg run --data ~/erg
  erg run --data ~/erg --apps ./build/apps --listen 127.0.0.1:6080
  erg run --data ~/erg --domain erg.home.arpa --listen :443 --http-listen :80
  erg run --data ~/erg --domain example.org --listen :443 --acme-dns cloudflare \
      --acme-email me@example.org --acme-setting CLOUDFLARE_DNS_API_TOKEN=...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cfg.DataDir = g.dataDir
			if acme.Provider != "" {
				acme.Credentials = map[string]string{}
				for _, kv := range acmeSettings {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return fmt.Errorf("--acme-setting %q: want NAME=VALUE", kv)
					}
					acme.Credentials[k] = v
				}
				cfg.TLS.ACME = &acme
			} else if len(acmeSettings) > 0 || acme.Email != "" || acme.Directory != "" {
				return fmt.Errorf("--acme-* flags need --acme-dns PROVIDER (one of %s)", strings.Join(tlsnode.ProviderNames(), ", "))
			}
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
	f.IntVar(&cfg.GrainDisk.GrainMB, "grain-disk-mb", 1024, "MiB a grain whose app sets no limits.diskMB may keep in /var (the owner may change it per grain: erg grain disk); as root the kernel enforces it, each grain's /var being its own file-system image")
	f.IntVar(&cfg.GrainDisk.UserMB, "user-disk-mb", 0, "MiB all of one user's grains may keep together; restores past it are refused (0: no bound)")
	f.IntVar(&cfg.GrainDisk.FloorMB, "disk-floor-mb", 1024, "MiB of free space on the data dir's disk that a restore may not take it below")
	f.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "HTTPS certificate chain (PEM) for DOMAIN and *.DOMAIN; read again when it changes")
	f.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "the private key (PEM) of --tls-cert")
	f.StringVar(&acme.Provider, "acme-dns", "", "get the certificate by ACME DNS-01 through this DNS provider: "+strings.Join(tlsnode.ProviderNames(), ", "))
	f.StringArrayVar(&acmeSettings, "acme-setting", nil, "NAME=VALUE setting of the DNS provider, as lego names them, e.g. CLOUDFLARE_DNS_API_TOKEN=... (repeatable)")
	f.StringVar(&acme.Email, "acme-email", "", "contact address for the ACME account")
	f.StringVar(&acme.Directory, "acme-directory", "", "ACME directory URL (default Let's Encrypt)")
	f.StringArrayVar(&cfg.TLS.ACMEResolvers, "acme-resolver", nil, "DNS server (host:port) to check the challenge record on (repeatable; default the system's)")
	f.BoolVar(&cfg.TLS.InsecureHTTP, "insecure-http", false, "serve plain HTTP on a real domain (behind your own TLS proxy)")
	f.StringVar(&cfg.TLS.PublicAddr, "public-addr", "", "host:port where friends' visitors reach this web port when it forwards HTTPS for them (default --listen)")
	f.StringVar(&cfg.TLS.HTTPListen, "http-listen", "", "also answer plain HTTP here (e.g. :80) with the redirect to HTTPS")
	f.BoolVar(&cfg.TLS.HTTP2, "http2", false, fmt.Sprintf("offer browsers HTTP/2 over HTTPS beside HTTP/1.1 (websockets stay on HTTP/1.1; one connection carries up to %d requests at once, where the connection caps count it once)", tlsnode.MaxStreams))
	f.BoolVarP(&verbose, "verbose", "v", false, "log debug detail")
	return cmd
}
