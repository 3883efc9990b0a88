package node

import (
	"context"
	"database/sql"
	"errors"

	"erg"
	"erg/apppkg"
	"erg/store"
)

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
