package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"erg"
	"erg/node"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags every subcommand takes.
type globals struct {
	dataDir string
	json    bool
}

func execute(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "erg:", err)
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "erg",
		Short: "erg is a personal cloud node: your apps, in sandboxes, on your machine",
		Long: `erg runs web apps for you in Linux sandboxes, one sandbox per document
("grain"), started when you open it and stopped when idle.

Start a node with 'erg run'; every other command talks to that running node
through the control socket in its data dir.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data", defaultDataDir(),
		"the node's data dir (env ERG_DATA)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print machine-readable JSON")
	root.AddCommand(newRunCmd(g), newStatusCmd(g), newGrainCmd(g), newAppCmd(g), newStoreCmd(g), newShareCmd(g), newUserCmd(g), newTokenCmd(g), newFriendCmd(g), newBackupCmd(g), newRestoreCmd(g))
	return root
}

// defaultDataDir is $ERG_DATA, else $XDG_DATA_HOME/erg, else ~/.local/share/erg.
func defaultDataDir() string {
	if d := os.Getenv("ERG_DATA"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "erg")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "erg")
	}
	return ""
}

// client reaches the node through the control socket in the data dir, or,
// with ERG_URL and ERG_TOKEN set (a token from 'erg token new'), over HTTP.
func (g *globals) client() *erg.Client {
	if u, t := os.Getenv("ERG_URL"), os.Getenv("ERG_TOKEN"); u != "" && t != "" {
		return erg.NewHTTPClient(u, t, nil)
	}
	return erg.NewClient(node.SocketPath(g.dataDir))
}

// print writes v as JSON with --json, or calls human otherwise.
func (g *globals) print(w io.Writer, v any, human func()) error {
	if g.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human()
	return nil
}
