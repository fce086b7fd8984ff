// Package testenv holds what integration tests need to run real processes
// on this machine: directories PostgreSQL can enter, loopback addresses that
// no other test uses, and the PostgreSQL binaries.
package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/store"
)

// Dir is a fresh directory that an unprivileged PostgreSQL can enter even
// when the tests run as root (t.TempDir is mode 0700). Removed at cleanup.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lifeline-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// LIFELINE_KEEP=1 keeps a failed test's directory, =all every one
		// (to read a benchmark's logs).
		if keep := os.Getenv("LIFELINE_KEEP"); keep == "all" || (t.Failed() && keep != "") {
			t.Logf("kept %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// Subnet returns the first three octets of a /24 in 127.0.0.0/8 that is
// free on the given port: tests that run in parallel (also across packages)
// each get their own addresses, so fixed ports never collide.
func Subnet(t testing.TB) string {
	t.Helper()
	for range 100 {
		s := fmt.Sprintf("127.%d.%d", 10+rand.IntN(240), 1+rand.IntN(250))
		l, err := net.Listen("tcp", s+".1:2379")
		if err == nil {
			l.Close()
			return s
		}
	}
	t.Fatal("no free loopback subnet")
	return ""
}

// PGBin returns the PostgreSQL binaries or fails the test.
func PGBin(t testing.TB) string {
	t.Helper()
	dir, err := postgres.FindBin()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Owner returns the OS user PostgreSQL runs as in tests.
func Owner(t testing.TB) *postgres.Owner {
	t.Helper()
	o, err := postgres.ResolveOwner("")
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// Join is filepath.Join, for brevity in tests.
func Join(elem ...string) string { return filepath.Join(elem...) }

// Etcd starts a one-member embedded etcd on a fresh loopback address,
// stopped at cleanup, and returns its client endpoints.
func Etcd(t testing.TB) []string {
	t.Helper()
	sub := Subnet(t)
	client, peer := "http://"+sub+".1:2379", "http://"+sub+".1:2380"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := Dir(t)
	m, err := store.StartMember(ctx, store.MemberConfig{
		Name: "test", Dir: filepath.Join(dir, "etcd"), ClientURL: client, PeerURL: peer,
		Cluster: map[string]string{"test": peer}, Token: "test", LogFile: filepath.Join(dir, "etcd.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return []string{client}
}
