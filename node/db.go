package node

import (
	"context"
	"database/sql"

	"erg/db"
)

// migrations are the database's schema steps (package db), in order.
var migrations = db.Migrations()

// openDB opens the node's metadata database with the whole schema.
func openDB(ctx context.Context, path string) (*sql.DB, error) { return db.Open(ctx, path) }
