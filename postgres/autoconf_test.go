package postgres_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeline-dr/lifeline/postgres"
)

// A data directory copied from a restored server (pg_basebackup or
// pg_rewind copy postgresql.auto.conf) must not keep that server's
// recovery and archive settings: auto.conf is read last and would win over
// lifeline.conf (a standby would never stream). Settings lifeline.conf does
// not set (a point-in-time target) stay.
func TestWriteConfig_CleansAutoConf(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "postgresql.conf"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	auto := "# Do not edit\nrestore_command = 'mv spool/%f %p'\nprimary_conninfo = ''\nrecovery_target_time = '2026-11-25 10:15:00'\narchive_command = 'x'\nwork_mem = '4MB'\n"
	if err := os.WriteFile(filepath.Join(data, "postgresql.auto.conf"), []byte(auto), 0o600); err != nil {
		t.Fatal(err)
	}
	pg := postgres.New(postgres.Config{Name: "t", Dir: dir, Address: "127.0.0.1", Port: 5432})
	up := &postgres.Upstream{Host: "127.0.0.2", Port: 5432, Slot: "s"}
	if err := pg.WriteConfig(postgres.Settings{AppName: "a", Upstream: up, Extra: map[string]string{"archive_command": "ours"}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(data, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, gone := range []string{"restore_command", "primary_conninfo", "archive_command = 'x'"} {
		if strings.Contains(got, gone) {
			t.Errorf("auto.conf still sets %s:\n%s", gone, got)
		}
	}
	for _, kept := range []string{"recovery_target_time", "work_mem", "# Do not edit"} {
		if !strings.Contains(got, kept) {
			t.Errorf("auto.conf lost %s:\n%s", kept, got)
		}
	}
}

// A restored copy recovering on its own keeps the restore_command its
// restore wrote.
func TestWriteConfig_KeepsARestoresRecovery(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "postgresql.conf"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "postgresql.auto.conf"), []byte("restore_command = 'fetch %f %p'\nprimary_conninfo = ''\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pg := postgres.New(postgres.Config{Name: "t", Dir: dir, Address: "127.0.0.1", Port: 5432})
	if err := pg.WriteConfig(postgres.Settings{AppName: "verify"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(data, "postgresql.auto.conf"))
	if !strings.Contains(string(b), "restore_command") || strings.Contains(string(b), "primary_conninfo") {
		t.Errorf("auto.conf:\n%s", b)
	}
}
