package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"erg"
	"erg/backup"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var dirs, friends []string
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Make a whole node again from its backups, onto an empty data dir",
		Long: `Restore a whole node (its identity, users, apps, grains, shares and
friends) into the data dir (--data), which must hold no node, from backup
directories (--from DIR) and friends' nodes that keep this node's backups
(--friend with an invite code of theirs or a multiaddr ending /p2p/<id>). The
recovery code is read from stdin or $ERG_RECOVERY_CODE. Then start it
with 'erg run': friends know it again, as its key is the same. How far it
has come (the part restored, its files and bytes of the total) is printed
on stderr, not with --json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(dirs) == 0 && len(friends) == 0 {
				return errors.New("say where the backups are: --from DIR or --friend INVITE")
			}
			code, err := readCode(cmd)
			if err != nil {
				return err
			}
			var named []backup.Named
			for _, d := range dirs {
				abs, err := filepath.Abs(d)
				if err != nil {
					return err
				}
				if _, err := os.Stat(filepath.Join(abs, backup.KindConfig)); err != nil {
					return fmt.Errorf("%s holds no erg backup", d)
				}
				dd, err := backup.OpenDir(abs)
				if err != nil {
					return err
				}
				named = append(named, backup.Named{Name: abs, Dest: dd})
			}
			ctx := cmd.Context()
			if len(friends) > 0 {
				keys, err := backup.DeriveKeys(code)
				if err != nil {
					return err
				}
				rc, err := backup.DialForRestore(cmd.Context(), keys, friends)
				if rc == nil {
					return err
				}
				defer rc.Close()
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "erg: %v\n", err)
				}
				named = append(named, rc.Named...)
			}
			if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var progress func(erg.BackupProgress)
			if !g.json {
				progress = progressLines(cmd.ErrOrStderr())
			}
			res, err := backup.RestoreNode(ctx, code, named, g.dataDir, progress)
			if err != nil {
				return err
			}
			return g.print(out, res, func() {
				fmt.Fprintf(out, "restored the node from its snapshot of %s with %d grains into %s\n", res.Time.Local().Format("2006-01-02 15:04:05"), res.Grains, g.dataDir)
				for _, m := range res.Missing {
					fmt.Fprintf(out, "  not restored: %s\n", m)
				}
				for _, p := range res.Problems {
					fmt.Fprintf(out, "  worked around: %s\n", p)
				}
				fmt.Fprintln(out, "start it with: erg run --data", g.dataDir)
			})
		},
	}
	cmd.Flags().StringArrayVar(&dirs, "from", nil, "a backup directory (repeatable)")
	cmd.Flags().StringArrayVar(&friends, "friend", nil, "a friend's invite code or multiaddr /…/p2p/<id> (repeatable)")
	return cmd
}
