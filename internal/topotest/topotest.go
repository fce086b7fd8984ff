// Package topotest runs real local topologies for integration tests and
// benchmarks: it builds the lifeline binary, runs `lifeline up` as a child
// process and stops it (and through it every agent and PostgreSQL) at
// cleanup, also when the test fails.
package topotest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/internal/netns"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/spec"
	"github.com/lifeline-dr/lifeline/status"
	"github.com/lifeline-dr/lifeline/wan"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Binary builds the lifeline command once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "lifeline-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "lifeline")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/lifeline")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build lifeline: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// Example copies an example spec onto loopback addresses that no other test
// uses, applying replacements (old, new pairs) to its text.
func Example(t testing.TB, name string, replace ...string) (specFile string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "examples", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return Spec(t, string(b), replace...)
}

// Spec writes a spec whose addresses 127.0.1.N, 127.0.2.N and 127.0.3.1 are
// moved to a loopback subnet no other test uses.
func Spec(t testing.TB, src string, replace ...string) string {
	t.Helper()
	sub := testenv.Subnet(t)
	src = strings.NewReplacer(replace...).Replace(src)
	src = strings.NewReplacer("127.0.1.", sub+".1", "127.0.2.", sub+".2", "127.0.3.1", sub+".31").Replace(src)
	specFile := filepath.Join(testenv.Dir(t), "lifeline.yaml")
	if err := os.WriteFile(specFile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return specFile
}

// Up is a running `lifeline up`.
type Up struct {
	t       testing.TB
	cmd     *exec.Cmd
	DataDir string
	// Netns is set when the hosts are network namespaces (StartNetns):
	// link cut drops packets.
	Netns bool
	Done  chan struct{}
	mu    sync.Mutex
	out   strings.Builder
}

// machine serialises topologies across test processes: `go test ./...` runs
// packages in parallel, and two six-node topologies on a two-core machine
// starve each other's etcd heartbeats and leases until tests time out.
var machine struct {
	sync.Mutex
	held int
	f    *os.File
}

// Exclusive holds the machine-wide topology lock until t's cleanup; a test
// that already holds it (a restart inside one test) takes it again at once.
// Tests that build network namespaces of their own take it too: the labs
// share the machine's address toward them (netns.HostAddress).
func Exclusive(t testing.TB) {
	t.Helper()
	machine.Lock()
	defer machine.Unlock()
	if machine.held == 0 {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "lifeline-topotest.lock"), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			t.Fatalf("topology lock: %v", err)
		}
		machine.f = f
	}
	machine.held++
	t.Cleanup(func() {
		machine.Lock()
		defer machine.Unlock()
		if machine.held--; machine.held == 0 {
			machine.f.Close() // releases the flock
			machine.f = nil
		}
	})
}

// Start runs `lifeline up` (with upArgs, e.g. --insecure) and waits until
// the topology is ready. Only one topology runs on the machine at a time:
// Start waits for the others. Without an --isolation in upArgs the
// topology runs on loopback addresses, whatever `up`'s default is here.
func Start(t testing.TB, specFile, dataDir string, upArgs ...string) *Up {
	t.Helper()
	if !slices.Contains(upArgs, "--isolation") {
		upArgs = append([]string{"--isolation", "loopback"}, upArgs...)
	}
	Exclusive(t)
	u := &Up{t: t, DataDir: dataDir, Done: make(chan struct{})}
	u.cmd = exec.Command(Binary(t), append([]string{"up", "-f", specFile, "--data-dir", dataDir}, upArgs...)...)
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := u.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	u.cmd.Stderr = u.cmd.Stdout
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var once sync.Once
		for sc.Scan() {
			u.mu.Lock()
			u.out.WriteString(sc.Text() + "\n")
			u.mu.Unlock()
			if strings.Contains(sc.Text(), " is up (") {
				once.Do(func() { close(ready) })
			}
		}
		u.cmd.Wait()
		close(u.Done)
	}()
	t.Cleanup(u.Stop)
	select {
	case <-ready:
	case <-u.Done:
		t.Fatalf("lifeline up exited before the topology was ready:\n%s", u.Output())
	case <-time.After(3 * time.Minute):
		t.Fatalf("lifeline up not ready after 3m:\n%s", u.Output())
	}
	return u
}

// StartNetns runs the topology with --isolation netns: every host in a
// network namespace of its own, partitions that drop packets. It skips the
// test, saying why, where namespaces cannot be used (not root, a container
// without the capabilities). At cleanup, once `up` has stopped, it checks
// that the machine's routes into the namespaces are gone (every address of
// the spec is this machine's loopback address again).
func StartNetns(t testing.TB, specFile, dataDir string, upArgs ...string) *Up {
	t.Helper()
	if err := netns.Check(); err != nil {
		t.Skipf("network namespaces cannot be used here (%v): the namespace topology's tests need root on Linux", err)
	}
	top, err := spec.Load(specFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for ip := range wan.Parties(top) {
			l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
			if err != nil {
				t.Errorf("%s is still routed into a namespace after up stopped: %v", ip, err)
				continue
			}
			l.Close()
		}
	})
	u := Start(t, specFile, dataDir, append([]string{"--isolation", "netns"}, upArgs...)...)
	u.Netns = true
	return u
}

// StartPreferNetns runs the topology on network namespaces where they can
// be used (as `up` does by default when run as root), else on loopback,
// saying so in the test's log.
func StartPreferNetns(t testing.TB, specFile, dataDir string, upArgs ...string) *Up {
	t.Helper()
	if err := netns.Check(); err != nil {
		t.Logf("network namespaces cannot be used here (%v): running on loopback addresses", err)
		return Start(t, specFile, dataDir, upArgs...)
	}
	return StartNetns(t, specFile, dataDir, upArgs...)
}

// Output is what `up` printed so far.
func (u *Up) Output() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.String()
}

// Stop asks up to stop and waits; a hung up gets SIGKILL for its whole group.
func (u *Up) Stop() {
	select {
	case <-u.Done:
		return
	default:
	}
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.Done:
	case <-time.After(2 * time.Minute):
		u.t.Errorf("lifeline up did not stop in 2m; killing it:\n%s", u.Output())
		_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
		<-u.Done
	}
}

// Lifeline runs a lifeline command against this topology's data directory.
func (u *Up) Lifeline(args ...string) (string, error) {
	cmd := exec.Command(Binary(u.t), append(args, "--data-dir", u.DataDir)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Status runs `lifeline status --json`.
func (u *Up) Status(t testing.TB) *status.Report {
	t.Helper()
	rep, err := u.TryStatus()
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TryStatus is Status for callers that wait through a partition, where one
// `lifeline status` can time out (a request that reached a member just cut
// off from the others waits for a quorum until its deadline).
func (u *Up) TryStatus() (*status.Report, error) {
	out, err := u.Lifeline("status", "--json")
	if err != nil {
		return nil, fmt.Errorf("status: %v\n%s", err, out)
	}
	var rep status.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		return nil, fmt.Errorf("status json: %v\n%s", err, out)
	}
	return &rep, nil
}

// WaitHealthy waits until every node of every workload reports healthy.
func (u *Up) WaitHealthy(t testing.TB, timeout time.Duration) *status.Report {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rep := u.Status(t)
		ok := true
		for _, w := range rep.Workloads {
			for _, n := range w.Nodes {
				ok = ok && n.Healthy
			}
		}
		if ok {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every node healthy after %v: %+v", timeout, rep)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// DSN is the superuser's connection string for a server of this topology
// at addr (host:port: a node, the writer or reader endpoint), as the
// operator: over TLS with the operator's certificate, the server checked
// against the topology's authority, when the topology has one. A topology
// with passwords needs the password added.
func (u *Up) DSN(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	s := fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres connect_timeout=2", host, port)
	f, err := certs.Find(certs.Dir(u.DataDir), certs.Operator)
	if err != nil {
		return s + " sslmode=disable"
	}
	return fmt.Sprintf("%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", s, f.CA, f.Cert, f.Key)
}

// PGEnv is the libpq environment of DSN's connections, for PostgreSQL's
// own programs (pgbench, psql).
func (u *Up) PGEnv() []string {
	f, err := certs.Find(certs.Dir(u.DataDir), certs.Operator)
	if err != nil {
		return []string{"PGSSLMODE=disable"}
	}
	return []string{"PGSSLMODE=verify-full", "PGSSLROOTCERT=" + f.CA, "PGSSLCERT=" + f.Cert, "PGSSLKEY=" + f.Key}
}

// NodeDSN is DSN for a node's database.
func (u *Up) NodeDSN(n status.Node) string {
	return u.DSN(net.JoinHostPort(n.Address, strconv.Itoa(n.Port)))
}

// Connect opens a connection to a node, closed at cleanup.
func (u *Up) Connect(t testing.TB, ctx context.Context, n status.Node) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, u.NodeDSN(n))
	if err != nil {
		t.Fatalf("connect %s/%s: %v", n.Region, n.Zone, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// ByRole groups a workload's nodes by role.
func ByRole(w status.Workload) map[string][]status.Node {
	m := map[string][]status.Node{}
	for _, n := range w.Nodes {
		m[n.Role] = append(m[n.Role], n)
	}
	return m
}
