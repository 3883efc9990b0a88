package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"erg"
	"erg/apppkg"
	"erg/appstore"
)

func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Search the decentralized app store, show listings and updates",
		Long: `Search the decentralized app store. There is no central index: the node
finds publishers through the DHT, asks them for their signed listings and
checks every signature. Install what you find with 'erg app install APPID'.`,
	}
	cmd.AddCommand(newStoreSearchCmd(g), newStoreShowCmd(g), newStoreUpdatesCmd(g))
	return cmd
}

func newStoreSearchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "search WORDS...",
		Short:   "Find apps by name words and tags",
		Example: `  erg store search notes`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := g.client().SearchStore(cmd.Context(), strings.Join(args, " "))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, p := range rep.Problems {
				fmt.Fprintln(cmd.ErrOrStderr(), "refused:", p)
			}
			return g.print(out, rep, func() {
				if len(rep.Results) == 0 {
					fmt.Fprintf(out, "no apps found (asked %d publishers)\n", rep.Peers)
					return
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tINSTALLED\tAPP ID\tSUMMARY")
				for _, l := range rep.Results {
					fmt.Fprintf(tw, "%s\t%s (%d)\t%s\t%s\t%s\n", l.Name, l.DisplayVersion, l.Version, installedText(l), l.AppID, oneLine(l.Summary, 60))
				}
				tw.Flush()
			})
		},
	}
}

func installedText(l erg.Listing) string {
	switch {
	case l.Installed == 0:
		return "-"
	case l.Installed < l.Version:
		return fmt.Sprintf("%d, update available", l.Installed)
	}
	return fmt.Sprintf("%d", l.Installed)
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

func newStoreShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show APPID",
		Short: "Show an app's newest listing, straight from the DHT",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.client().ShowListing(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, l, func() {
				fmt.Fprintf(out, "name        %s\napp id      %s\nversion     %s (%d)\ninstalled   %s\n", l.Name, l.AppID, l.DisplayVersion, l.Version, installedText(l))
				fmt.Fprintf(out, "summary     %s\ntags        %s\npackage     %s\npublisher   %s\nsignature   valid\n", l.Summary, strings.Join(l.Tags, ", "), l.Package, l.Publisher)
			})
		},
	}
}

func newStoreUpdatesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "updates",
		Short: "List installed apps that have a newer version in the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ls, err := g.client().StoreUpdates(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, ls, func() {
				if len(ls) == 0 {
					fmt.Fprintln(out, "every installed app is up to date")
					return
				}
				for _, l := range ls {
					fmt.Fprintf(out, "%s: version %d installed, %s (%d) in the store: erg app update %s\n", l.Name, l.Installed, l.DisplayVersion, l.Version, l.AppID)
				}
			})
		},
	}
}

func newAppPublishCmd(g *globals) *cobra.Command {
	var keyPath, summary string
	var tags []string
	cmd := &cobra.Command{
		Use:   "publish FILE",
		Short: "Publish a package file in the decentralized app store",
		Long: `Publish a signed package file in the app store. The running node stores and
serves the package's blocks, and puts a listing signed with the app's key
(the one 'erg app keygen' made, or --key) in the DHT under the app id. The
node announces itself under each tag and each word of the app's name so
searches find it, and announces again on a schedule while it runs.`,
		Example: `  erg app publish notes.erg --tag notes --tag writing`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pkg, err := apppkg.OpenFile(ctx, args[0], apppkg.SizeLimits{})
			if err != nil {
				return fmt.Errorf("%s is not a valid package: %w", args[0], err)
			}
			defer pkg.Close()
			key, err := loadAppKey(keyPath, pkg.AppID, "only its publisher can publish it (pass --key)")
			if err != nil {
				return err
			}
			st, err := g.client().Status(ctx)
			if err != nil {
				return err
			}
			if st.PeerID == "" {
				return errors.New("the running node has no p2p host")
			}
			desc, err := apppkg.DescriptorCID(pkg)
			if err != nil {
				return err
			}
			rec, err := appstore.SignListing(appstore.ListingFor(pkg, desc, st.PeerID, tags, summary), key)
			if err != nil {
				return err
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
			l, err := g.client().PublishPackage(ctx, rec, body)
			if pr, ok := body.(*progressReader); ok {
				pr.p.done()
			}
			if err != nil {
				return fmt.Errorf("publish %s: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			return g.print(out, l, func() {
				fmt.Fprintf(out, "published %s %s (version %d)\napp id  %s\npackage %s\n", l.Name, l.DisplayVersion, l.Version, l.AppID, l.Package)
				if len(l.Tags) > 0 {
					fmt.Fprintf(out, "tags    %s\n", strings.Join(l.Tags, ", "))
				}
			})
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "the app's signing key (default: the key for its app id in your config dir)")
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "a word the app is found by (repeatable)")
	cmd.Flags().StringVar(&summary, "summary", "", "one line about the app (default: the manifest's description)")
	return cmd
}

func newAppUpdateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "update APPID",
		Short: "Install the newest version of an installed app from the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.client().ShowListing(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if l.Installed == 0 {
				return fmt.Errorf("%s is not installed: install it with 'erg app install %s'", l.Name, l.AppID)
			}
			if l.Installed >= l.Version {
				out := cmd.OutOrStdout()
				return g.print(out, l, func() {
					fmt.Fprintf(out, "%s is up to date (version %d)\n", l.Name, l.Installed)
				})
			}
			return installFromStore(cmd, g, args[0])
		},
	}
}

// isAppIDArg says whether `erg app install ARG` means an app in the store:
// ARG is an app id and no file of that name exists.
func isAppIDArg(arg string) bool {
	if !apppkg.IsAppID(arg) {
		return false
	}
	_, err := os.Stat(arg)
	return errors.Is(err, os.ErrNotExist)
}

// installFromStore has the node fetch and install an app, showing each
// step: the download's figures, then the node's verifying and unpacking.
func installFromStore(cmd *cobra.Command, g *globals, appID string) error {
	errw := cmd.ErrOrStderr()
	fetching := false
	var phase *progress
	app, err := g.client().InstallFromStore(cmd.Context(), appID, func(s erg.InstallStep) {
		if s.Phase == erg.PhaseFetching {
			fetching = true
			rate := 0.0
			if s.Elapsed > 0 {
				rate = float64(s.Done) / time.Duration(s.Elapsed).Seconds()
			}
			fmt.Fprintf(errw, "\rfetching: %.1f MB, %d blocks from %d peers, %.1f MB/s   ", float64(s.Done)/1e6, s.Blocks, s.Peers, rate/1e6)
			return
		}
		if phase == nil || phase.what != s.Phase {
			if fetching {
				fmt.Fprintln(errw)
				fetching = false
			}
			if phase != nil {
				phase.done()
			}
			// Each phase says it began, however small the package;
			// big ones then show their percentage.
			fmt.Fprintf(errw, "%s\n", s.Phase)
			phase = newProgress(errw, s.Phase)
		}
		phase.update(s.Done, s.Total)
	})
	if fetching {
		fmt.Fprintln(errw)
	}
	if phase != nil {
		phase.done()
	}
	if err != nil {
		return fmt.Errorf("install %s: %w", appID, err)
	}
	out := cmd.OutOrStdout()
	return g.print(out, app, func() {
		fmt.Fprintf(out, "installed %s %s (version %d) from the store\napp id %s\n", app.Name, app.DisplayVersion, app.Version, app.ID)
	})
}

// storeUpdates asks the node, briefly, which installed apps have a newer
// version in the store, and returns a note per app id. A slow or absent
// store leaves the notes empty rather than holding up the listing.
func storeUpdates(cmd *cobra.Command, g *globals) map[string]string {
	ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
	defer cancel()
	notes := map[string]string{}
	ls, err := g.client().StoreUpdates(ctx)
	if err != nil {
		return notes
	}
	for _, l := range ls {
		notes[l.AppID] = fmt.Sprintf("update: %s (%d) in the store", l.DisplayVersion, l.Version)
	}
	return notes
}
