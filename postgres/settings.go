package postgres

import (
	"context"
	"fmt"
)

// Settings reads the server's server_version_num and the values of the
// named settings (those it does not know are left out).
func (i *Instance) Settings(ctx context.Context, names []string) (int, map[string]string, error) {
	conn, err := i.Connect(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close(context.Background())
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return 0, nil, fmt.Errorf("settings of %s: %w", i.cfg.Name, err)
	}
	rows, err := conn.Query(ctx, "SELECT name, setting FROM pg_settings WHERE name = ANY($1)", names)
	if err != nil {
		return 0, nil, fmt.Errorf("settings of %s: %w", i.cfg.Name, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return 0, nil, fmt.Errorf("settings of %s: %w", i.cfg.Name, err)
		}
		out[name] = value
	}
	return version, out, rows.Err()
}
