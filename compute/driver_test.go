package compute

import (
	"slices"
	"testing"
)

func TestScrubbedEnv(t *testing.T) {
	got := scrubbedEnv([]string{
		"PATH=/usr/bin", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC",
		"LIFELINE_BACKUP_KEY=secret", "PGPASSWORD=secret", "AWS_SECRET_ACCESS_KEY=secret", "ORDERS_DB_PASSWORD=secret",
	})
	want := []string{"PATH=/usr/bin", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC"}
	if !slices.Equal(got, want) {
		t.Errorf("scrubbedEnv = %v, want %v", got, want)
	}
}
