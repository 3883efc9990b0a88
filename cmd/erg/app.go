package main

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"erg"
	"erg/apppkg"
)

func newAppCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Make, check, install, publish and update signed app packages",
		Long: `Make and check signed app packages.

An app is identified by its publisher's ed25519 key: 'erg app keygen' makes
one and prints the app id to put in the manifest's "id" field. The key stays
in your config dir and never goes into a package.`,
	}
	cmd.AddCommand(newAppKeygenCmd(g), newAppIDCmd(g), newAppPackCmd(g), newAppVerifyCmd(g), newAppInstallCmd(g), newAppLsCmd(g),
		newAppPublishCmd(g), newAppUpdateCmd(g), newAppDevCmd(g))
	return cmd
}

// keysDir is where app signing keys live: $XDG_CONFIG_HOME/erg/keys.
func keysDir() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config dir for app keys: %w (set XDG_CONFIG_HOME)", err)
	}
	return filepath.Join(dir, "erg", "keys"), nil
}

func newAppKeygenCmd(g *globals) *cobra.Command {
	var outPath string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make a new app signing key and print its app id",
		Long: `Make a new ed25519 app signing key. Its public half is the app id: put
it in the manifest's "id" field. The key is written (mode 0600) to your
config dir as keys/<app id>.key, where 'erg app pack' finds it, or to --out.
Never put it inside the app's tree.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := apppkg.GenerateKey()
			if err != nil {
				return err
			}
			id := apppkg.AppID(key.Public().(ed25519.PublicKey))
			path := outPath
			if path == "" {
				dir, err := keysDir()
				if err != nil {
					return err
				}
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return err
				}
				path = filepath.Join(dir, id+".key")
			}
			if err := apppkg.SaveKey(path, key); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, map[string]string{"appId": id, "key": path}, func() {
				fmt.Fprintf(out, "app id: %s\nkey:    %s (keep it safe: whoever holds it can publish this app)\n", id, path)
				fmt.Fprintf(out, "put the app id in your manifest: \"id\": %q\n", id)
			})
		},
	}
	cmd.Flags().StringVarP(&outPath, "out", "o", "", "write the key to this file instead of your config dir (never overwritten)")
	return cmd
}

func newAppIDCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "id KEYFILE",
		Short: "Print the app id that a signing key signs for",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := apppkg.LoadKey(args[0])
			if err != nil {
				return err
			}
			id := apppkg.AppID(key.Public().(ed25519.PublicKey))
			out := cmd.OutOrStdout()
			return g.print(out, map[string]string{"appId": id}, func() { fmt.Fprintln(out, id) })
		},
	}
}

func newAppPackCmd(g *globals) *cobra.Command {
	var output, keyPath string
	cmd := &cobra.Command{
		Use:   "pack DIR",
		Short: "Sign the app tree in DIR into one package file",
		Long: `Sign the app tree in DIR (with its erg.json manifest) into one package
file: a CARv2 file holding the tree as a UnixFS DAG and a signed descriptor.
The key is the one 'erg app keygen' made for the manifest's id, or --key.

For native programs, pack copies in the dynamic loader and every shared
library the tree's ELF binaries need (read from their ELF headers), and the
host paths the manifest lists under "include" or DIR/erg-files.list names
(see 'erg app dev').`,
		Example: `  erg app pack ./notes -o notes.erg`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := apppkg.ReadManifest(args[0])
			if err != nil {
				return err
			}
			key, err := loadAppKey(keyPath, m.ID, "run 'erg app keygen' and put its app id in the manifest, or pass --key")
			if err != nil {
				return err
			}
			if output == "" {
				output = filepath.Base(filepath.Clean(args[0])) + ".erg"
			}
			// Native programs get their loader, libraries and the manifest's
			// include paths copied in first.
			tree, cleanup, err := apppkg.PrepareTree(args[0], "")
			if err != nil {
				return err
			}
			defer cleanup()
			var pkg *apppkg.Package
			err = writeFileAtomic(output, func(f *os.File) error {
				progress := newProgress(cmd.ErrOrStderr(), "packing")
				defer progress.done()
				var err error
				pkg, err = apppkg.Pack(cmd.Context(), tree, key, f, apppkg.PackOptions{Progress: progress.update})
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, packageInfo(pkg, output, true), func() {
				fmt.Fprintf(out, "packed %s %s (version %d) into %s\n", pkg.Manifest.Name, pkg.Manifest.DisplayVersion, pkg.Version, output)
				fmt.Fprintf(out, "package %s\n", pkg.CID)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "the package file to write (default DIR's name + .erg)")
	cmd.Flags().StringVar(&keyPath, "key", "", "the signing key (default: the key for the manifest's id in your config dir)")
	return cmd
}

func newAppVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a package's signature and every block, and say what it holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pkg, err := apppkg.OpenFile(cmd.Context(), args[0], apppkg.SizeLimits{})
			if err != nil {
				return fmt.Errorf("%s is not a valid package: %w", args[0], err)
			}
			defer pkg.Close()
			out := cmd.OutOrStdout()
			return g.print(out, packageInfo(pkg, args[0], true), func() {
				fmt.Fprintf(out, "app id     %s\nname       %s\nversion    %s (%d)\npackage    %s\nsize       %d bytes\nsignature  valid, every block checked\n",
					pkg.AppID, pkg.Manifest.Name, pkg.Manifest.DisplayVersion, pkg.Version, pkg.CID, pkg.Size)
			})
		},
	}
}

func packageInfo(pkg *apppkg.Package, file string, valid bool) map[string]any {
	return map[string]any{
		"file": file, "appId": pkg.AppID, "name": pkg.Manifest.Name, "version": pkg.Version,
		"displayVersion": pkg.Manifest.DisplayVersion, "package": pkg.CID.String(), "size": pkg.Size,
		"signatureValid": valid,
	}
}

// progress prints a percentage line for work over a few megabytes.
type progress struct {
	w     io.Writer
	what  string
	last  int
	shown bool
	tty   bool
}

func newProgress(w io.Writer, what string) *progress {
	return &progress{w: w, what: what, last: -1, tty: isTerminal(w)}
}

// isTerminal reports whether w is a terminal, where a progress line can
// redraw itself; elsewhere (a log, a pipe) progress is a line per quarter.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progress) update(done, total int64) {
	if total < 4<<20 {
		return
	}
	pct := int(done * 100 / total)
	if !p.tty {
		pct = pct / 25 * 25
	}
	if pct == p.last {
		return
	}
	p.last, p.shown = pct, true
	if p.tty {
		fmt.Fprintf(p.w, "\r%s: %3d%% of %d MB", p.what, pct, total>>20)
	} else {
		fmt.Fprintf(p.w, "%s: %3d%% of %d MB\n", p.what, pct, total>>20)
	}
}

func (p *progress) done() {
	if p.shown && p.tty {
		fmt.Fprintln(p.w)
	}
}

func newAppInstallCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "install FILE|APPID",
		Short: "Install a package file or an app from the store on the running node, or upgrade its app",
		Long: `Install a signed package file on the running node. The node checks the
signature and every block before it unpacks anything. A package of an app
that is already installed must carry a higher version, signed by the same
key; existing grains then run the new version from their next start.
Given an app id, the node fetches the app's newest package from the store.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if isAppIDArg(args[0]) {
				return installFromStore(cmd, g, args[0])
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			var body io.Reader = f
			if fi, err := f.Stat(); err == nil {
				body = &progressReader{r: f, total: fi.Size(), p: newProgress(cmd.ErrOrStderr(), "uploading")}
			}
			// The node reports its verifying and unpacking once the upload
			// is in; each phase gets its own progress line.
			var phase *progress
			app, err := g.client().InstallPackageProgress(cmd.Context(), body, func(s erg.InstallStep) {
				if pr, ok := body.(*progressReader); ok && phase == nil {
					pr.p.done()
				}
				if phase == nil || phase.what != s.Phase {
					if phase != nil {
						phase.done()
					}
					phase = newProgress(cmd.ErrOrStderr(), s.Phase)
				}
				phase.update(s.Done, s.Total)
			})
			if phase != nil {
				phase.done()
			} else if pr, ok := body.(*progressReader); ok {
				pr.p.done()
			}
			if err != nil {
				return fmt.Errorf("install %s: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			return g.print(out, app, func() {
				fmt.Fprintf(out, "installed %s %s (version %d)\napp id %s\n", app.Name, app.DisplayVersion, app.Version, app.ID)
			})
		},
	}
}

func newAppLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the apps installed on the running node",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			apps, err := g.client().Apps(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, apps, func() {
				ups := storeUpdates(cmd, g)
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tAPP ID\t")
				for _, a := range apps {
					fmt.Fprintf(tw, "%s\t%s (%d)\t%s\t%s\n", a.Name, a.DisplayVersion, a.Version, a.ID, ups[a.ID])
				}
				tw.Flush()
			})
		},
	}
}

// progressReader reports how much of a file has been read.
type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	p     *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.done += int64(n)
	r.p.update(r.done, r.total)
	return n, err
}
