package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"erg/apppkg"
	"erg/install"
)

// installAppsDir installs what it finds directly below dir: signed package
// files (*.erg), each unless the same or a newer version is installed, and
// app trees (directories with erg.json at their root), the unsigned form
// for development. Both go through the one install pipeline.
func (n *Node) installAppsDir(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("apps dir: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var src install.Source
		switch {
		case !e.IsDir() && filepath.Ext(e.Name()) == ".erg":
			src = install.File(p)
		case e.IsDir():
			if _, err := os.Stat(filepath.Join(p, apppkg.ManifestFile)); err != nil {
				continue
			}
			src = install.Tree(p)
		default:
			continue
		}
		res, err := n.installer.Install(ctx, src, install.Options{SkipOld: true})
		if err != nil {
			return fmt.Errorf("install %s: %w", p, err)
		}
		if res.Installed {
			n.log.Info("app installed", "app", res.Manifest.ID, "version", res.Manifest.DisplayVersion, "from", p)
		}
	}
	return nil
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
