package node

import (
	"context"
	"database/sql"
	"errors"
	"io"

	"erg"
	"erg/apppkg"
	"erg/store"
	"erg/webui"
)

var _ webui.StoreBackend = (*Node)(nil)

// PublishPackage implements webui.StoreBackend (store.Service.Publish).
func (n *Node) PublishPackage(ctx context.Context, rec []byte, r io.Reader) (erg.Listing, error) {
	return n.store.Publish(ctx, rec, r)
}

// SearchStore implements webui.StoreBackend.
func (n *Node) SearchStore(ctx context.Context, query string) (erg.SearchReport, error) {
	return n.store.Search(ctx, query)
}

// ShowListing implements webui.StoreBackend.
func (n *Node) ShowListing(ctx context.Context, appID string) (erg.Listing, error) {
	return n.store.Listing(ctx, appID)
}

// InstallFromStore implements webui.StoreBackend (store.Service.Install).
func (n *Node) InstallFromStore(ctx context.Context, appID string, progress erg.InstallProgress) (erg.App, error) {
	return n.store.Install(ctx, appID, progress)
}

// StoreUpdates implements webui.StoreBackend.
func (n *Node) StoreUpdates(ctx context.Context) ([]erg.Listing, error) {
	return n.store.Updates(ctx)
}

// installedApps is what the store asks of the node's apps table.
type installedApps struct{ n *Node }

var _ store.Apps = installedApps{}

func (a installedApps) Version(ctx context.Context, appID string) (int64, error) {
	var v int64
	err := a.n.db.QueryRowContext(ctx, `SELECT version FROM apps WHERE id = ?`, appID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func (a installedApps) Versions(ctx context.Context) ([]store.AppVersion, error) {
	rows, err := a.n.db.QueryContext(ctx, `SELECT id, version FROM apps ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AppVersion
	for rows.Next() {
		var v store.AppVersion
		if err := rows.Scan(&v.ID, &v.Version); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (installedApps) Describe(m *apppkg.Manifest) erg.App { return appInfo(m) }
