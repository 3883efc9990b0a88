package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"erg/apppkg"
	"erg/fed"
	"erg/sandbox"
)

// FilesList is the name of the file list `erg app dev` writes beside the
// manifest, and `erg app pack` reads.
const FilesList = apppkg.FilesListFile

// devHostDirs are the host dirs a development sandbox shows, where they
// exist.
var devHostDirs = []string{"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc"}

type appDevOptions struct {
	listen string
	user   string
	role   string
	list   string
	varDir string
}

func newAppDevCmd(g *globals) *cobra.Command {
	var o appDevOptions
	cmd := &cobra.Command{
		Use:   "dev DIR",
		Short: "Run the app in DIR in a development sandbox and record the host files it uses",
		Long: `Run the app in DIR in a development sandbox, to port an existing program.

The app starts as its erg.json manifest says (command, env, port), in the
same kind of sandbox as a grain, with two differences:

  - the host's system dirs (/usr, /lib, /lib64, /bin, /sbin, /etc, those
    that exist) are visible read-only at their usual place, so a program
    installed on this machine (python3, say) runs without being packaged
    first; DIR's own entries appear read-only at the root (DIR/app.py is
    /app.py). DIR must not have entries named like those dirs.
  - every file any process of the app opens, executes, stats, checks or
    reads a link of under those dirs is recorded.

/var is DIR/.erg-dev/var (or --var), kept between runs; /tmp is fresh.

The app's port is served at the http:// address printed once it listens,
through a small proxy that adds the headers the node's proxy adds
(X-Erg-Username, X-Erg-Permissions, X-Erg-User-Id, X-Erg-Session-Id and
their X-Sandstorm- twins) for --user holding --role (by default the
manifest's ownerRole). Click through everything the app does: each page,
each kind of request, so that every module and library it loads is seen.

Stop with Ctrl-C (or SIGTERM). The files seen that exist on the host are
then merged, sorted, into DIR/erg-files.list (or --list): repeated sessions
add up, and the list may be edited by hand (one absolute path a line, #
comments). 'erg app pack DIR' copies exactly those files into the package
(plus the shared libraries of any ELF file among them), so the package runs
with no host dirs.

Tracing uses seccomp user notification, so it works as an unprivileged user
and follows every child process. As root the app runs as uid 60001, which
must be able to read DIR.`,
		Example: `  erg app dev apps/pynotes
  erg app dev --role viewer --user bob apps/pynotes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runAppDev(ctx, args[0], o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:0", "the host address to serve the app on")
	f.StringVar(&o.user, "user", "owner", "the X-Erg-Username the app sees")
	f.StringVar(&o.role, "role", "", "the role whose permissions the app sees (default: the manifest's ownerRole)")
	f.StringVar(&o.list, "list", "", "the file list to write (default DIR/"+FilesList+")")
	f.StringVar(&o.varDir, "var", "", "the app's /var (default DIR/.erg-dev/var)")
	return cmd
}

func runAppDev(ctx context.Context, dir string, o appDevOptions, out, errOut io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	m, err := apppkg.ReadManifest(dir)
	if err != nil {
		return err
	}
	perms, err := rolePermissions(m, o.role)
	if err != nil {
		return err
	}
	if o.list == "" {
		o.list = filepath.Join(dir, FilesList)
	}
	// Read first: a list that does not parse is refused before anything runs.
	old, err := apppkg.ReadFilesList(o.list)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if o.varDir == "" {
		devDir := filepath.Join(dir, apppkg.DevDir)
		if err := os.MkdirAll(devDir, 0o700); err != nil {
			return err
		}
		// Like .pytest_cache: the dir keeps itself out of git.
		os.WriteFile(filepath.Join(devDir, ".gitignore"), []byte("# scratch of 'erg app dev'\n*\n"), 0o644)
		o.varDir = filepath.Join(devDir, "var")
	}
	if o.varDir, err = filepath.Abs(o.varDir); err != nil {
		return err
	}
	var hostDirs []string
	for _, h := range devHostDirs {
		if _, err := os.Lstat(h); err == nil {
			hostDirs = append(hostDirs, h)
		}
	}
	if err := os.MkdirAll(o.varDir, 0o700); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn}))
	runner, err := sandbox.NewRunner(sandbox.Config{Log: log, Zygotes: -1})
	if err != nil {
		return err
	}
	defer runner.Close()

	rec := &recorder{dirs: hostDirs, root: dir, seen: map[string]bool{}, checked: map[string]bool{}}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/var", "TMPDIR=/tmp", "PORT=" + strconv.Itoa(m.Port)}
	spec := sandbox.Spec{
		Name:   "dev-" + strconv.Itoa(os.Getpid()),
		Root:   dir,
		Var:    o.varDir,
		Args:   m.Command,
		Env:    append(env, m.Env...),
		Stdout: errOut,
		Stderr: errOut,
		HostRO: hostDirs,
		Trace:  rec.add,
	}
	spec.Limits.MemoryBytes = int64(m.Limits.MemoryMB) << 20
	spec.Limits.Pids = m.Limits.Pids
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	sb, err := runner.Start(startCtx, spec)
	cancel()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: devProxy(sb, m.Port, o.user, perms), ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String() + "/"
	if err := waitForApp(ctx, sb, m.Port); err != nil {
		if ctx.Err() == nil {
			fmt.Fprintf(errOut, "the app did not start listening on port %d: %v\n", m.Port, err)
		}
	} else {
		fmt.Fprintf(out, "serving %s at %s as %s (%s)\n", m.Name, url, o.user, strings.Join(perms, ","))
		fmt.Fprintf(out, "recording the files it uses under %s; press Ctrl-C to stop and write %s\n", strings.Join(hostDirs, " "), o.list)
		select {
		case <-ctx.Done():
		case <-sb.Done():
			fmt.Fprintf(errOut, "the app exited: %v\n", sb.Err())
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(sctx)
	cancel()
	sctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	sb.Stop(sctx) // every Trace call is made by the time it returns
	cancel()
	var appErr error
	if err := sb.Err(); err != nil && !errors.Is(err, sandbox.ErrStopped) {
		appErr = err
	}

	seen := rec.existing()
	merged, added := mergeLists(old, seen)
	if err := apppkg.WriteFilesList(o.list, merged); err != nil {
		return err
	}
	fmt.Fprintf(out, "recorded %d files the app used (%d new); %s now lists %d\n", len(seen), added, o.list, len(merged))
	if appErr != nil {
		return fmt.Errorf("the app failed: %w", appErr)
	}
	return nil
}

// rolePermissions is the permissions of the named role, or of the owner
// role if name is "".
func rolePermissions(m *apppkg.Manifest, name string) ([]string, error) {
	if name == "" {
		name = m.OwnerRole
	}
	var names []string
	for _, r := range m.Roles {
		if r.Name == name {
			return r.Permissions, nil
		}
		names = append(names, r.Name)
	}
	return nil, fmt.Errorf("the manifest has no role %q (it has %s)", name, strings.Join(names, ", "))
}

// recorder keeps the traced paths under the host dirs, and the
// interpreters of the scripts among all traced paths.
type recorder struct {
	dirs    []string
	root    string // the app dir: the sandbox's / for paths not under dirs
	mu      sync.Mutex
	seen    map[string]bool
	checked map[string]bool // paths looked at for a #! line
}

func (r *recorder) add(p string) {
	if strings.ContainsAny(p, "\n\r") {
		return // cannot be a line of the list
	}
	host := r.hostPath(p)
	if host {
		r.mu.Lock()
		r.seen[p] = true
		r.mu.Unlock()
	}
	r.interpreters(p, host)
}

func (r *recorder) hostPath(p string) bool {
	for _, d := range r.dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// interpreters records what a script's #! line names. The kernel starts a
// script's interpreter without a system call the tracer sees, so without
// this a program that runs, say, npm (a Node.js script starting
// "#!/usr/bin/env node") works here, where the host's /usr/bin/env is
// visible, and fails with ENOENT in a grain. For "#!/usr/bin/env NAME"
// the NAME a grain's PATH finds is recorded too.
func (r *recorder) interpreters(p string, host bool) {
	r.mu.Lock()
	done := r.checked[p]
	r.checked[p] = true
	r.mu.Unlock()
	if done {
		return
	}
	file := p
	if !host {
		file = filepath.Join(r.root, filepath.FromSlash(p))
	}
	fi, err := os.Stat(file)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return
	}
	f, err := os.Open(file)
	if err != nil {
		return
	}
	head := make([]byte, 256)
	n, _ := f.Read(head)
	f.Close()
	line, ok := strings.CutPrefix(string(head[:n]), "#!")
	if !ok {
		return
	}
	line, _, _ = strings.Cut(line, "\n")
	fields := strings.Fields(line)
	if len(fields) == 0 || !filepath.IsAbs(fields[0]) {
		return
	}
	r.add(filepath.Clean(fields[0]))
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 && !strings.HasPrefix(fields[1], "-") {
		for _, d := range grainPath {
			if c := filepath.Join(d, fields[1]); r.hostPath(c) {
				if _, err := os.Stat(c); err == nil {
					r.add(c)
					return
				}
			}
		}
	}
}

// grainPath is the PATH a grain runs with.
var grainPath = []string{"/usr/local/bin", "/usr/bin", "/bin"}

// existing returns, sorted, the recorded paths that exist on the host: the
// rest are probes that found nothing (python looking for its zip file,
// the loader trying library dirs), which the package needs no more than
// the host had. Files not everyone may read are left out too: the app
// could at most stat them, and a package must not publish them.
func (r *recorder) existing() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for p := range r.seen {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode().IsRegular() && fi.Mode().Perm()&0o004 == 0 {
			continue
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// mergeLists returns the sorted union of two lists and how many of b were
// not in a.
func mergeLists(a, b []string) ([]string, int) {
	set := map[string]bool{}
	for _, p := range a {
		set[p] = true
	}
	added := 0
	for _, p := range b {
		if !set[p] {
			set[p] = true
			added++
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, added
}

// waitForApp waits until the app accepts a connection on port, or gives up
// after a minute or when it exits.
func waitForApp(ctx context.Context, sb *sandbox.Sandbox, port int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := sb.Dial(dctx, port)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-sb.Done():
			return fmt.Errorf("it exited: %w", sb.Err())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

// devProxy forwards requests to the app's port, replacing any identity
// headers the browser sent with the ones the node would send for user.
func devProxy(sb *sandbox.Sandbox, port int, user string, perms []string) http.Handler {
	sum := sha256.Sum256([]byte("erg-dev-user:" + user))
	userID := hex.EncodeToString(sum[:16])
	session := rand.Text()
	joined := strings.Join(perms, ",")
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "127.0.0.1:" + strconv.Itoa(port)
			pr.Out.Host = pr.In.Host
			fed.StripClientHeaders(pr.Out.Header)
			for _, prefix := range []string{"X-Erg-", "X-Sandstorm-"} {
				pr.Out.Header.Set(prefix+"User-Id", userID)
				pr.Out.Header.Set(prefix+"Username", user)
				pr.Out.Header.Set(prefix+"Permissions", joined)
				pr.Out.Header.Set(prefix+"Session-Id", session)
			}
		},
		Transport: &http.Transport{
			DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return sb.Dial(ctx, port) },
			MaxIdleConns:    16,
			IdleConnTimeout: 30 * time.Second,
		},
	}
}
