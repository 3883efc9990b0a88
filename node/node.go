// Package node is erg's composition root: it reads the configuration, locks
// the data dir, loads the node's identity, opens the database, and builds
// and wires the feature services (accounts, grains, shares, installs, the
// store, friends, the grains shared with friends' nodes) with the sandbox,
// the libp2p host and the web UI; it starts and stops them in order.
package node

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"erg/accounts"
	"erg/apitokens"
	"erg/backup"
	"erg/db"
	"erg/fedgrains"
	"erg/friends"
	"erg/grains"
	"erg/install"
	"erg/internal/connlimit"
	"erg/internal/unixsock"
	"erg/p2p"
	"erg/powerbox"
	"erg/sandbox"
	"erg/shares"
	"erg/store"
	"erg/tlsforward"
	"erg/tlsnode"
	"erg/webui"
)

// Config is everything `erg run` can set. The zero value of every field
// except DataDir has a working default.
type Config struct {
	DataDir   string        // required
	Listen    string        // web UI and grains; default 127.0.0.1:6080
	Domain    string        // grains are served on g-<id>.<Domain>; default localhost
	GrainIdle time.Duration // stop a grain this long after its last request; default 5m
	AppsDir   string        // if set, install every app tree below it at start
	Owner     string        // the owner's username until they set up their account; default $USER or "owner"
	MaxUpload int64         // largest package or backup upload; default 1 GiB
	P2PListen []string      // libp2p listen multiaddrs; default p2p.AllInterfaces; port 0 means the node's stable port
	Bootstrap []string      // multiaddrs (with /p2p/<id>) of peers to join the DHT through
	Relays    []string      // multiaddrs (with /p2p/<id>) of relays to reserve a slot on when behind NAT
	Name      string        // what the node calls itself to friends; default the owner's username, else the host name
	Version   string
	Log       *slog.Logger
	// GrainCPUPercent is the CPU ceiling, in percent of one core, of
	// grains whose app sets none (the owner may change it per grain); 0
	// is none.
	GrainCPUPercent int
	// GrainDisk bounds what grains keep in /var: each grain (default 1
	// GiB), each user's together, and the free space a restore must
	// leave (package grains, DiskConfig).
	GrainDisk grains.DiskConfig

	// Limits on what anyone who can reach the web port, signed in or not,
	// can hold open. Zero means the default; negative means no limit.
	MaxConns      int           // connections open on the web port; default 1024
	MaxConnsPerIP int           // of those, from one client address (IPv6: one /64); default 64
	MaxWebsockets int           // websockets open per user (anonymous visitors: per address); default 64
	IdleTimeout   time.Duration // close a keep-alive connection idle this long; default 2m
	ReadTimeout   time.Duration // a request must arrive in this long, and a body may stall no longer; default 1m
	MinUploadRate int64         // bytes/s a request body must keep up on average; default 1 KiB/s

	TLS TLSConfig // HTTPS on a real domain

	BackupTick time.Duration // how often the backup schedule is looked at; default 1m
}

// Defaults of the limits in Config.
const (
	DefaultMaxConns      = 1024
	DefaultMaxConnsPerIP = 64
	DefaultMaxWebsockets = 64
	DefaultIdleTimeout   = 2 * time.Minute
	DefaultReadTimeout   = time.Minute
	DefaultMinUploadRate = 1 << 10

	// maxHeaderBytes bounds a request's line and headers. net/http allows
	// 4 KiB over it, so a request with more than 36 KiB of headers is
	// refused with 431 before it is read further: connections sending
	// huge headers cost the node that much each at most.
	maxHeaderBytes = 32 << 10
)

// Paths inside the data dir.
const (
	identityFile = "identity.key"
	dbFile       = "erg.db"
	socketFile   = "erg.sock"
	lockFile     = "lock"
	packagesDir  = "packages"
	p2pPortFile  = "p2p-port"
	grainsDir    = "grains"
)

// SocketPath is where the node in dataDir listens for client commands.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, socketFile) }

// Node is a running erg node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	key     ed25519.PrivateKey
	db      *sql.DB
	runner  *sandbox.Runner
	grains  *grains.Service    // grains, their sandboxes, sessions and backups
	shares  *shares.Service    // sharing links and the shares users hold
	tokens  *apitokens.Service // grains' API tokens, for the API origin
	pbox    *powerbox.Service  // grants between grains, and their bridges
	started time.Time
	lock    *os.File

	installMu sync.Mutex // one install at a time: the version check and the write go together
	installer *install.Installer
	bg        sync.WaitGroup

	accounts *accounts.Service // users, sign-ins, invites and API tokens

	p2p     *p2pState          // libp2p host, DHT and app store
	sharing *fedgrains.Service // grains shared between this node and friends' nodes

	store   *store.Service   // what this node published and provides, and its installs from the store
	friends *friends.Service // other nodes this one trusts, and connections to them
	backups *backup.Service  // scheduled, encrypted backups and their restores

	certs   *tlsnode.Manager    // the web port's certificate; nil when it serves plain HTTP
	forward *tlsforward.Service // remote access through friends (HTTPS only)
	webLn   net.Listener
	limits  *connlimit.Listener // webLn, counting connections
	closers []io.Closer         // listeners under the servers' own (the HTTPS port's split)
	sockLn  net.Listener
	servers []*http.Server
	web     *webui.Handler // plain HTTP's, whose grain loop Close stops
	serveWG sync.WaitGroup
}

// Start opens the data dir, checks the sandbox can run, and starts serving.
// It returns once the node accepts requests.
func Start(ctx context.Context, cfg Config) (n *Node, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("no data dir: pass --data DIR or set ERG_DATA")
	}
	cfg.DataDir, err = filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:6080"
	}
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.GrainIdle <= 0 {
		cfg.GrainIdle = 5 * time.Minute
	}
	if cfg.Owner == "" {
		cfg.Owner = os.Getenv("USER")
	}
	if cfg.Owner == "" {
		cfg.Owner = "owner"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.MaxConns = orDefault(cfg.MaxConns, DefaultMaxConns)
	cfg.MaxConnsPerIP = orDefault(cfg.MaxConnsPerIP, DefaultMaxConnsPerIP)
	cfg.MaxWebsockets = orDefault(cfg.MaxWebsockets, DefaultMaxWebsockets)
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.ReadTimeout = orDefault(cfg.ReadTimeout, DefaultReadTimeout)
	cfg.MinUploadRate = orDefault(cfg.MinUploadRate, DefaultMinUploadRate)
	// The returns below name nil for n, so the cleanup keeps its own copy.
	node := &Node{cfg: cfg, log: cfg.Log, started: time.Now()}
	n = node
	defer func() {
		if err != nil {
			node.Close()
			n = nil
		}
	}()

	for _, d := range []string{"", packagesDir, grainsDir} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	if err := n.lockDataDir(); err != nil {
		return nil, err
	}
	// "Restore this node" left a restored node to become this one.
	if adopted, err := backup.AdoptPending(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("adopt the restored node: %w", err)
	} else if adopted {
		n.log.Info("this node is now the one restored from backups")
	}
	if n.key, err = p2p.LoadIdentity(filepath.Join(cfg.DataDir, identityFile)); err != nil {
		return nil, err
	}
	if n.db, err = db.Open(ctx, filepath.Join(cfg.DataDir, dbFile)); err != nil {
		return nil, err
	}
	n.installer = n.newInstaller()
	if n.runner, err = sandbox.NewRunner(sandbox.Config{Log: n.log.With("subsystem", "sandbox")}); err != nil {
		return nil, fmt.Errorf("cannot run grains here: %w", err)
	}
	n.log.Info("sandbox ready", "mode", n.runner.Mode(), "cgroups", n.runner.Cgroups())
	if n.grains, err = grains.New(ctx, grains.Config{
		DB:          n.db,
		Runner:      n.runner,
		Dir:         filepath.Join(cfg.DataDir, grainsDir),
		PackagesDir: filepath.Join(cfg.DataDir, packagesDir),
		TempDir:     filepath.Join(cfg.DataDir, "tmp"),
		InstallLock: &n.installMu,
		Idle:        cfg.GrainIdle,
		Log:         n.log.With("subsystem", "grains"),
		Derive:      n.derive,
		Usernames:   func(ctx context.Context) (map[string]string, error) { return n.accounts.Usernames(ctx) }, // accounts come next
		Origin:      n.grainOrigin,
		CPUPercent:  cfg.GrainCPUPercent,
		Disk:        cfg.GrainDisk,
		Bridge:      func(id string) http.Handler { return n.pbox.Bridge(id) },
		BridgeConn:  func(id string, c net.Conn) { n.pbox.ServeCapnp(id, c) },
	}); err != nil {
		return nil, err
	}
	if err := n.initAccounts(ctx); err != nil {
		return nil, err
	}
	if err := n.newSharing(ctx); err != nil {
		return nil, err
	}
	n.shares = shares.New(shares.Config{
		DB:                n.db,
		Grains:            n.grains,
		Log:               n.log,
		UserByName:        n.accounts.UserByName,
		URL:               n.URL,
		ShareWithFriend:   n.sharing.ShareWithFriend,
		RevokeFriendShare: n.sharing.RevokeFriendShare,
	})
	n.tokens = apitokens.New(apitokens.Config{
		DB:         n.db,
		Grains:     n.grains,
		Log:        n.log.With("subsystem", "apitokens"),
		Derive:     n.derive,
		UserByName: n.accounts.UserByName,
		APIURL: func() string {
			scheme, port := tlsnode.WebScheme(n.certs, n.webLn)
			return webui.APIOrigin(scheme, n.cfg.Domain, port)
		},
	})
	n.pbox = n.newPowerbox()
	if cfg.AppsDir != "" {
		if err := n.installer.InstallDir(ctx, cfg.AppsDir); err != nil {
			return nil, err
		}
	}
	if err := n.grains.CollectPackages(ctx); err != nil {
		n.log.Warn("remove unused packages", "err", err)
	}
	if err := n.startP2P(ctx); err != nil {
		return nil, err
	}
	if err := n.startFed(ctx); err != nil {
		return nil, err
	}
	if err := n.startBackups(ctx); err != nil {
		return nil, err
	}

	if n.certs, err = tlsnode.Start(ctx, cfg.Domain, filepath.Join(cfg.DataDir, tlsDir), cfg.TLS, cfg.Log); err != nil {
		return nil, err
	}
	if err := n.listen(); err != nil {
		return nil, err
	}
	n.log.Info("node running", "url", n.URL(), "data", cfg.DataDir)
	return n, nil
}

// lockDataDir makes sure only one node uses a data dir at a time.
func (n *Node) lockDataDir() error {
	f, err := os.OpenFile(filepath.Join(n.cfg.DataDir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("another erg node is already using %s", n.cfg.DataDir)
	}
	n.lock = f
	return nil
}

func (n *Node) listen() error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("web UI: %w (is another node running? choose another address with --listen)", err)
	}
	n.limits = connlimit.New(ln, max(n.cfg.MaxConns, 0), max(n.cfg.MaxConnsPerIP, 0))
	n.webLn = n.limits
	sock := SocketPath(n.cfg.DataDir)
	// We hold the data dir lock, so a socket file left here is stale.
	os.Remove(sock)
	sl, err := unixsock.Listen(sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	n.sockLn = sl

	webLog := n.log.With("subsystem", "webui")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	opts := webui.Options{Domain: n.cfg.Domain, MaxUpload: n.cfg.MaxUpload,
		MaxWebsockets: max(n.cfg.MaxWebsockets, 0), BodyStall: max(n.cfg.ReadTimeout, 0), MinBodyRate: max(n.cfg.MinUploadRate, 0),
		Certs: n.certs, HTTPSPort: port}
	svc := webui.Services{Node: n, Accounts: n.accounts, Store: n.store, Friends: n.friends, Grains: n.grains, Shares: n.shares, Installer: n.installer, APITokens: n.tokens, Powerbox: n.pbox, Backups: n.backups}
	if n.certs == nil {
		web := webui.NewHandler(svc, opts, webLog)
		n.serve(sl, webui.APIHandler(svc, opts, webLog))
		n.serve(n.webLn, web)
		// Grain connections its loop serves outside net/http come back
		// here for whatever the loop leaves to the server.
		n.serve(web.HandedBack(), web)
		n.web = web
		return nil
	}
	// One port for both: HTTPS, and plain HTTP redirected to it; TLS for
	// friends' names goes on to them, unread.
	split := tlsnode.NewSplit(n.webLn, 10*time.Second)
	n.closers = append(n.closers, split)
	public := n.cfg.TLS.PublicAddr
	if public == "" {
		public = n.webLn.Addr().String()
	}
	n.forward = tlsforward.ForFriends(n.p2p.host.Libp2p(), n.friends, n.cfg.Domain, split.TLS.Put, public, filepath.Join(n.cfg.DataDir, tlsDir, "forwarding.json"), n.log)
	split.Forward(n.cfg.Domain, tlsforward.PeekSNI, n.forward.Forward)
	opts.Forward = n.forward
	web := webui.NewHandler(svc, opts, webLog)
	n.serve(sl, webui.APIHandler(svc, opts, webLog))
	n.serve(tls.NewListener(split.TLS, n.certs.TLSConfig()), web)
	n.serve(split.Plain, web.Redirector())
	if addr := n.cfg.TLS.HTTPListen; addr != "" {
		pl, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("plain HTTP (--http-listen): %w", err)
		}
		n.serve(connlimit.New(pl, max(n.cfg.MaxConns, 0), max(n.cfg.MaxConnsPerIP, 0)), web.Redirector())
	}
	if fp := n.certs.Status().CAFingerprint; fp != "" && n.certs.CACertificate() != nil {
		n.log.Info("HTTPS with the node's own CA: trust it once on each device", "page", "http://"+net.JoinHostPort(n.cfg.Domain, port)+"/_erg/ca", "sha256", fp)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.closers = append(n.closers, closerFunc(cancel))
	n.bg.Go(func() { n.certs.Run(ctx) })
	return nil
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

func (n *Node) serve(ln net.Listener, h http.Handler) {
	// The read timeout covers a whole request, body included; handlers
	// reading long bodies extend it as the bytes arrive (webui's body
	// guard), and websockets are free of it once upgraded. There is no
	// write timeout: downloads and event streams may run long, and a
	// client that stops reading holds only its own connections, which
	// the caps bound.
	headerTimeout := 10 * time.Second
	if n.cfg.ReadTimeout > 0 {
		headerTimeout = min(headerTimeout, n.cfg.ReadTimeout)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       max(n.cfg.ReadTimeout, 0),
		IdleTimeout:       max(n.cfg.IdleTimeout, 0),
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: tlsnode.MaxStreams}, // where TLS offers h2
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.servers = append(n.servers, srv)
	n.serveWG.Add(1)
	go func() {
		defer n.serveWG.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("serve", "addr", ln.Addr(), "err", err)
		}
	}()
}

// orDefault is v, or def when v is zero.
func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// URL is the node's web address.
func (n *Node) URL() string {
	if n.webLn == nil {
		return ""
	}
	scheme, port := tlsnode.WebScheme(n.certs, n.webLn)
	if port != "" {
		return scheme + "://" + net.JoinHostPort(n.cfg.Domain, port)
	}
	return scheme + "://" + n.cfg.Domain
}

// Addr is the address the web port listens on.
func (n *Node) Addr() string { return n.webLn.Addr().String() }

// NodeID is the node's public key in text.
func (n *Node) NodeID() string {
	return base64.RawURLEncoding.EncodeToString(n.key.Public().(ed25519.PublicKey))
}

// Close stops serving, stops every grain and closes the database.
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range n.servers {
		s.Shutdown(ctx)
	}
	if n.web != nil {
		n.web.Shutdown(ctx) // the grain loop's connections, hijacked
	}
	for _, s := range n.servers {
		s.Close() // hijacked websockets are not closed by Shutdown
	}
	n.serveWG.Wait()
	for _, c := range n.closers {
		c.Close()
	}
	if n.forward != nil {
		n.forward.Close()
	}
	if n.backups != nil {
		n.backups.Close()
	}
	n.stopFed()
	n.stopP2P()
	if n.grains != nil {
		n.grains.Close()
	}
	if n.pbox != nil {
		n.pbox.Close()
	}
	n.bg.Wait()
	if n.sharing != nil {
		n.sharing.Close() // after the host, so revocations still being told fail fast
	}
	if n.runner != nil {
		n.runner.Close()
	}
	if n.sockLn != nil {
		os.Remove(SocketPath(n.cfg.DataDir))
	}
	var err error
	if n.db != nil {
		err = n.db.Close()
	}
	if n.lock != nil {
		n.lock.Close()
	}
	return err
}
