package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline/internal/proc"
)

// Config describes one PostgreSQL instance on this node.
type Config struct {
	// Name is used in logs and errors, e.g. "orders@eu-west/a".
	Name   string
	BinDir string
	// Dir holds the instance: data/ (PGDATA) and postgres.log.
	Dir string
	// Data, when set, is PGDATA itself (Dir then holds only the log):
	// for a data directory an operator named.
	Data    string
	Owner   *Owner
	Address string
	Port    int

	Superuser           string
	Password            string
	ReplicationUser     string
	ReplicationPassword string
	// AppRole is the role the workload's services log in as: no
	// superuser, owner of a schema of its name (where their tables go).
	// AppPassword is its password; empty with certificate authentication.
	AppRole     string
	AppPassword string
	// TLS is the server's certificate. With it, the server accepts only TLS
	// connections (hostssl), from Allow, authenticated with scram-sha-256
	// when Password is set and otherwise with a certificate whose common
	// name CertRoles maps to the role; Lifeline's own connections check the
	// server's certificate (verify-full) and show TLS's as theirs.
	TLS       *TLSFiles
	CertRoles map[string][]string
	// Trust lists addresses allowed in without a password, on a server
	// without TLS (a scratch instance, a local topology made without TLS
	// and passwords); otherwise clients from Allow (addresses or CIDRs)
	// must authenticate.
	Trust []string
	Allow []string
	// ServerName maps an address this node dials to the address of the
	// server behind it (a WAN route's listen address to its target), which
	// the server's certificate names; nil when they are the same.
	ServerName func(host string, port int) string
	// Parameters are postgresql.conf settings; they override Lifeline's own.
	Parameters map[string]string
	Logger     *slog.Logger
}

// Settings is the part of the configuration that changes with the node's
// role. It is rewritten before every start and on every role change.
type Settings struct {
	// Upstream is the server a standby replicates from; nil for a primary.
	Upstream *Upstream
	// AppName identifies this node in the primary's pg_stat_replication.
	AppName string
	// SyncStandbyNames is synchronous_standby_names. A standby ignores it;
	// one that carries the names it would use as primary is promoted
	// without a reload first.
	SyncStandbyNames string
	// Extra settings (archive_command, ...).
	Extra map[string]string
}

// Upstream is where a standby streams WAL from.
type Upstream struct {
	Host string
	Port int
	// Slot is this standby's physical replication slot on the upstream.
	Slot string
}

// Instance supervises one PostgreSQL server as a child process.
type Instance struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan struct{} // closed when the current process has exited
	err  error           // its exit status
}

// New returns an instance; nothing runs until InitDB or BaseBackup and Start.
func New(cfg Config) *Instance {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	closed := make(chan struct{})
	close(closed)
	return &Instance{cfg: cfg, log: cfg.Logger.With("postgres", cfg.Name), done: closed}
}

// DataDir is PGDATA.
func (i *Instance) DataDir() string {
	if i.cfg.Data != "" {
		return i.cfg.Data
	}
	return filepath.Join(i.cfg.Dir, "data")
}

// LogFile is where the server's output goes.
func (i *Instance) LogFile() string {
	if i.cfg.Data != "" {
		return i.cfg.Data + ".log"
	}
	return filepath.Join(i.cfg.Dir, "postgres.log")
}

// Config returns the instance's configuration.
func (i *Instance) Config() Config { return i.cfg }

// Initialized reports whether PGDATA holds a database cluster.
func (i *Instance) Initialized() bool {
	_, err := os.Stat(filepath.Join(i.DataDir(), "PG_VERSION"))
	return err == nil
}

// command runs a PostgreSQL tool as the owner with a clean environment.
func (i *Instance) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(i.cfg.BinDir, name), args...)
	home := os.Getenv("HOME")
	if i.cfg.Owner != nil {
		home = i.cfg.Owner.Home
	}
	cmd.Env = append([]string{"HOME=" + home, "LC_ALL=C", "PATH=" + i.cfg.BinDir + ":/usr/bin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: i.cfg.Owner.credential()}
	cmd.Dir = i.cfg.Dir
	return cmd
}

func (i *Instance) run(ctx context.Context, env []string, name string, args ...string) error {
	out, err := i.command(ctx, env, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, lastLines(out, 15))
	}
	return nil
}

func (i *Instance) prepareDir() error {
	// The instance's directory holds PGDATA, the log and the password
	// file: its owner's only.
	if err := os.MkdirAll(i.cfg.Dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(i.cfg.Dir, 0o700); err != nil {
		return err
	}
	if err := i.cfg.Owner.CheckReachable(i.cfg.Dir); err != nil {
		return err
	}
	if err := i.cfg.Owner.Chown(i.cfg.Dir); err != nil {
		return err
	}
	return i.writePassFile()
}

// PassFile is the libpq password file of Lifeline's own connections: in
// the instance's directory, outside PGDATA, so that no base backup holds
// it.
func (i *Instance) PassFile() string { return filepath.Join(i.cfg.Dir, "pgpass") }

// writePassFile writes the superuser's and the replication user's
// passwords for the walreceiver, pg_basebackup and pg_rewind.
func (i *Instance) writePassFile() error {
	var b strings.Builder
	if i.cfg.ReplicationPassword != "" {
		b.WriteString(passFileLine(i.cfg.ReplicationUser, i.cfg.ReplicationPassword))
	}
	if i.cfg.Password != "" {
		b.WriteString(passFileLine(i.cfg.Superuser, i.cfg.Password))
	}
	if b.Len() == 0 {
		if err := os.Remove(i.PassFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return i.writeFile(i.PassFile(), []byte(b.String()), 0o600)
}

// client is how Lifeline connects to servers of this workload as user.
func (i *Instance) client(user, password string) Client {
	c := Client{User: user, Password: password, TLS: i.cfg.TLS}
	if password != "" {
		c.PassFile = i.PassFile()
	}
	return c
}

func (i *Instance) superuser() Client { return i.client(i.cfg.Superuser, i.cfg.Password) }
func (i *Instance) replication() Client {
	return i.client(i.cfg.ReplicationUser, i.cfg.ReplicationPassword)
}

// serverName is the address the server dialed at host:port names in its certificate.
func (i *Instance) serverName(host string, port int) string {
	if i.cfg.ServerName == nil {
		return host
	}
	return i.cfg.ServerName(host, port)
}

// InitDB creates a new database cluster with data checksums, so that
// pg_rewind and corruption detection work.
func (i *Instance) InitDB(ctx context.Context) error {
	if i.Initialized() {
		return fmt.Errorf("initdb %s: %s is already initialised", i.cfg.Name, i.DataDir())
	}
	if err := i.prepareDir(); err != nil {
		return fmt.Errorf("initdb %s: %w", i.cfg.Name, err)
	}
	tmp := i.DataDir() + ".initdb"
	_ = os.RemoveAll(tmp)
	args := []string{"-D", tmp, "--data-checksums", "--username", i.cfg.Superuser,
		"--encoding", "UTF8", "--locale", "C", "--auth-local", "trust", "--auth-host", "scram-sha-256"}
	if i.cfg.Password != "" {
		pw := filepath.Join(i.cfg.Dir, ".pwfile")
		if err := os.WriteFile(pw, []byte(i.cfg.Password+"\n"), 0o600); err != nil {
			return err
		}
		defer os.Remove(pw)
		if err := i.cfg.Owner.Chown(pw); err != nil {
			return err
		}
		args = append(args, "--pwfile", pw)
	}
	i.log.Info("initdb", "dir", i.DataDir())
	if err := i.run(ctx, nil, "initdb", args...); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("initdb %s: %w", i.cfg.Name, err)
	}
	// Only a complete cluster ever appears at PGDATA.
	if err := os.Rename(tmp, i.DataDir()); err != nil {
		return fmt.Errorf("initdb %s: %w", i.cfg.Name, err)
	}
	return nil
}

// BaseBackup seeds PGDATA from a running server with pg_basebackup.
func (i *Instance) BaseBackup(ctx context.Context, up Upstream) error {
	if err := i.prepareDir(); err != nil {
		return fmt.Errorf("base backup %s: %w", i.cfg.Name, err)
	}
	tmp := i.DataDir() + ".basebackup"
	_ = os.RemoveAll(tmp)
	i.log.Info("pg_basebackup", "from", fmt.Sprintf("%s:%d", up.Host, up.Port))
	start := time.Now()
	src := i.replication().Conninfo(up.Host, up.Port, i.serverName(up.Host, up.Port), "")
	err := i.run(ctx, nil, "pg_basebackup", "-D", tmp, "-d", src, "--no-password", "-X", "stream", "--checkpoint", "fast")
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("base backup %s from %s:%d: %w", i.cfg.Name, up.Host, up.Port, err)
	}
	if err := os.RemoveAll(i.DataDir()); err != nil {
		return err
	}
	if err := os.Rename(tmp, i.DataDir()); err != nil {
		return fmt.Errorf("base backup %s: %w", i.cfg.Name, err)
	}
	i.log.Info("pg_basebackup done", "seconds", time.Since(start).Seconds())
	return nil
}

// Discard moves PGDATA aside (never deletes it) so that it can be reseeded.
func (i *Instance) Discard() (string, error) {
	if !i.Initialized() {
		return "", nil
	}
	aside := fmt.Sprintf("%s.discarded-%s", i.DataDir(), time.Now().UTC().Format("20060102T150405"))
	if err := os.Rename(i.DataDir(), aside); err != nil {
		return "", fmt.Errorf("move aside %s: %w", i.DataDir(), err)
	}
	return aside, nil
}

// WriteConfig writes Lifeline's settings, pg_hba.conf and the standby signal.
func (i *Instance) WriteConfig(s Settings) error {
	data := i.DataDir()
	conf := map[string]string{
		"listen_addresses":             i.cfg.Address,
		"port":                         strconv.Itoa(i.cfg.Port),
		"unix_socket_directories":      "",
		"wal_level":                    "replica",
		"hot_standby":                  "on",
		"hot_standby_feedback":         "on",
		"max_wal_senders":              "16",
		"max_replication_slots":        "16",
		"wal_log_hints":                "on",
		"wal_keep_size":                "128MB",
		"max_slot_wal_keep_size":       "2GB",
		"wal_receiver_status_interval": "1s",
		// After a failover, standbys retry their new upstream every second.
		"wal_retrieve_retry_interval": "1s",
		"wal_sender_timeout":          "10s",
		"wal_receiver_timeout":        "10s",
		"synchronous_commit":          "on",
		"synchronous_standby_names":   s.SyncStandbyNames,
		"password_encryption":         "scram-sha-256",
		"log_line_prefix":             "%m [%p] %q%u@%d ",
		"cluster_name":                s.AppName,
		"recovery_target_timeline":    "latest",
	}
	if t := i.cfg.TLS; t != nil {
		conf["ssl"] = "on"
		conf["ssl_cert_file"] = t.Cert
		conf["ssl_key_file"] = t.Key
		conf["ssl_ca_file"] = t.CA
		conf["ssl_min_protocol_version"] = "TLSv1.2"
	} else {
		conf["ssl"] = "off"
	}
	if s.Upstream != nil {
		conf["primary_conninfo"] = i.conninfo(*s.Upstream, s.AppName)
		conf["primary_slot_name"] = s.Upstream.Slot
	} else {
		conf["primary_conninfo"] = ""
		conf["primary_slot_name"] = ""
	}
	for k, v := range s.Extra {
		conf[k] = v
	}
	for k, v := range i.cfg.Parameters {
		conf[k] = v
	}
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("# Written by lifeline before every start and role change; edits are overwritten.\n" +
		"# Put your own settings in the spec (database.parameters).\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, quote(conf[k]))
	}
	if err := i.writeFile(filepath.Join(data, "lifeline.conf"), b.Bytes(), 0o600); err != nil {
		return err
	}
	if err := i.cleanAutoConf(conf, s.Upstream != nil); err != nil {
		return err
	}
	if err := i.ensureInclude(); err != nil {
		return err
	}
	if err := i.writeFile(filepath.Join(data, "pg_hba.conf"), i.hba(), 0o600); err != nil {
		return err
	}
	if err := i.writeFile(filepath.Join(data, "pg_ident.conf"), i.ident(), 0o600); err != nil {
		return err
	}
	if err := i.writePassFile(); err != nil {
		return err
	}
	signal := filepath.Join(data, "standby.signal")
	if s.Upstream != nil {
		return i.writeFile(signal, nil, 0o600)
	}
	if err := os.Remove(signal); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// cleanAutoConf removes from postgresql.auto.conf every setting that
// lifeline.conf sets (conf), and for a standby that follows a primary its
// restore_command too: auto.conf is read after lifeline.conf and would win.
// A data directory copied (pg_basebackup, pg_rewind) from a restored
// server carries that server's recovery settings there (an empty
// primary_conninfo, a restore_command reading its own spool). A restored copy that
// recovers on its own (no upstream) keeps the restore_command its restore
// wrote.
func (i *Instance) cleanAutoConf(conf map[string]string, following bool) error {
	path := filepath.Join(i.DataDir(), "postgresql.auto.conf")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configure %s: %w", i.cfg.Name, err)
	}
	ours := map[string]bool{"restore_command": following}
	for k := range conf {
		ours[k] = true
	}
	var out []string
	changed := false
	for _, line := range strings.Split(string(b), "\n") {
		key, _, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && ours[strings.TrimSpace(key)] {
			changed = true
			continue
		}
		out = append(out, line)
	}
	if !changed {
		return nil
	}
	return i.writeFile(path, []byte(strings.Join(out, "\n")), 0o600)
}

const includeLine = "include_if_exists = 'lifeline.conf'"

func (i *Instance) ensureInclude() error {
	path := filepath.Join(i.DataDir(), "postgresql.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("configure %s: %w", i.cfg.Name, err)
	}
	if bytes.Contains(b, []byte(includeLine)) {
		return nil
	}
	b = append(b, []byte("\n"+includeLine+"\n")...)
	return i.writeFile(path, b, 0o600)
}

func (i *Instance) hba() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by lifeline; edits are overwritten.\n# TYPE DATABASE USER ADDRESS METHOD\n")
	if i.cfg.TLS != nil {
		// TLS only, from the topology's addresses only.
		method := "cert map=" + identMap
		if i.cfg.Password != "" {
			method = "scram-sha-256"
		}
		// Replication: the standbys' user, and the superuser, which base
		// backups connect as.
		repl := i.cfg.ReplicationUser + "," + i.cfg.Superuser
		for _, a := range i.cfg.Allow {
			cidr := hostCIDR(a)
			fmt.Fprintf(&b, "hostssl all all %s %s\nhostssl replication %s %s %s\n", cidr, method, repl, cidr, method)
		}
		return b.Bytes()
	}
	b.WriteString("local all all trust\n")
	for _, a := range i.cfg.Trust {
		fmt.Fprintf(&b, "host all all %s/32 trust\nhost replication all %s/32 trust\n", a, a)
	}
	for _, cidr := range i.cfg.Allow {
		fmt.Fprintf(&b, "host all all %s scram-sha-256\nhost replication %s %s scram-sha-256\n", cidr, i.cfg.ReplicationUser, cidr)
	}
	return b.Bytes()
}

// identMap names the pg_ident.conf map of certificate authentication.
const identMap = "lifeline"

// ident maps certificates' common names to the roles they may log in as.
func (i *Instance) ident() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by lifeline; edits are overwritten.\n# MAPNAME CERTIFICATE-NAME ROLE\n")
	names := make([]string, 0, len(i.cfg.CertRoles))
	for n := range i.cfg.CertRoles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, role := range i.cfg.CertRoles[n] {
			fmt.Fprintf(&b, "%s %s %s\n", identMap, identQuote(n), role)
		}
	}
	return b.Bytes()
}

// identQuote quotes a pg_ident.conf field that holds more than name characters.
func identQuote(s string) string {
	if strings.ContainsAny(s, " \t\"#,") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// hostCIDR makes an address a CIDR of that one host; a CIDR stays as it is.
func hostCIDR(a string) string {
	switch {
	case strings.Contains(a, "/"):
		return a
	case strings.Contains(a, ":"):
		return a + "/128"
	}
	return a + "/32"
}

func (i *Instance) conninfo(up Upstream, appName string) string {
	return i.replication().Conninfo(up.Host, up.Port, i.serverName(up.Host, up.Port), "") + " " + strings.Join([]string{
		"application_name=" + appName,
		// Detect a dead upstream in seconds, not after the kernel's TCP timeouts.
		"keepalives=1", "keepalives_idle=2", "keepalives_interval=1", "keepalives_count=3",
	}, " ")
}

func (i *Instance) writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if i.cfg.Owner != nil {
		if err := os.Chown(tmp, int(i.cfg.Owner.UID), int(i.cfg.Owner.GID)); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Start runs the server as a child process and waits until it accepts
// connections. The server gets SIGQUIT (immediate shutdown) if this process
// dies, so a primary never outlives the agent that fences it.
func (i *Instance) Start(ctx context.Context) error {
	if i.Running() {
		return nil
	}
	if err := i.stopOrphan(ctx); err != nil {
		return err
	}
	logf, err := os.OpenFile(i.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start %s: %w", i.cfg.Name, err)
	}
	offset, _ := logf.Seek(0, io.SeekEnd)
	cmd := i.command(context.Background(), nil, "postgres", "-D", i.DataDir())
	cmd.Stdout, cmd.Stderr = logf, logf
	done, err := proc.Start(cmd, syscall.SIGQUIT, func(err error) {
		logf.Close()
		i.mu.Lock()
		i.err = err
		i.mu.Unlock()
	})
	if err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", i.cfg.Name, err)
	}
	i.mu.Lock()
	i.cmd, i.done, i.err = cmd, done, nil
	i.mu.Unlock()
	i.log.Info("postgres started", "pid", cmd.Process.Pid, "addr", fmt.Sprintf("%s:%d", i.cfg.Address, i.cfg.Port))

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := i.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("start %s: postgres exited: %v: %s", i.cfg.Name, i.exitErr(), i.logSince(offset))
		case <-ctx.Done():
			return fmt.Errorf("start %s: not ready: %w (last error: %v)", i.cfg.Name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (i *Instance) exitErr() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.err
}

func (i *Instance) logSince(offset int64) string {
	f, err := os.Open(i.LogFile())
	if err != nil {
		return ""
	}
	defer f.Close()
	_, _ = f.Seek(offset, io.SeekStart)
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return lastLines(b, 10)
}

// stopOrphan stops a postmaster left running on this PGDATA by an earlier
// agent (one that died before its parent-death signal could be delivered):
// it cannot be supervised, so it must not keep serving.
func (i *Instance) stopOrphan(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(i.DataDir(), "postmaster.pid"))
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(i.DataDir())) {
		return nil // stale pid file; postgres itself will clean it up
	}
	i.log.Warn("stopping an orphaned postmaster on this data directory", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return nil
}

// Running reports whether the server process is alive.
func (i *Instance) Running() bool {
	i.mu.Lock()
	done := i.done
	i.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Exited is closed when the current server process exits.
func (i *Instance) Exited() <-chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.done
}

// PID is the postmaster's process id, or 0.
func (i *Instance) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd == nil || i.cmd.Process == nil {
		return 0
	}
	select {
	case <-i.done:
		return 0
	default:
		return i.cmd.Process.Pid
	}
}

// Stop shuts the server down: fast shutdown (sessions end, a checkpoint is
// written), escalating to immediate and then SIGKILL if it does not stop.
func (i *Instance) Stop(ctx context.Context) error {
	return i.stop(ctx, syscall.SIGINT, 60*time.Second)
}

// Kill stops the server immediately (no checkpoint; crash recovery on the
// next start). Used to fence a primary that must stop accepting writes now.
func (i *Instance) Kill(ctx context.Context) error {
	return i.stop(ctx, syscall.SIGQUIT, 5*time.Second)
}

func (i *Instance) stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error {
	i.mu.Lock()
	cmd, done := i.cmd, i.done
	i.mu.Unlock()
	if cmd == nil || !i.Running() {
		return nil
	}
	for _, s := range []syscall.Signal{sig, syscall.SIGQUIT, syscall.SIGKILL} {
		_ = cmd.Process.Signal(s)
		select {
		case <-done:
			i.log.Info("postgres stopped", "signal", s.String())
			return nil
		case <-time.After(grace):
			i.log.Warn("postgres did not stop in time; escalating", "signal", s.String(), "waited", grace)
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			return ctx.Err()
		}
		grace = 5 * time.Second
	}
	<-done
	return nil
}

// Reload makes the server re-read its configuration.
func (i *Instance) Reload() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd == nil || i.cmd.Process == nil {
		return fmt.Errorf("reload %s: not running", i.cfg.Name)
	}
	return i.cmd.Process.Signal(syscall.SIGHUP)
}

// ConnString is the superuser's connection string for this instance
// (password included).
func (i *Instance) ConnString(dbname string) string {
	s := i.superuser().Conninfo(i.cfg.Address, i.cfg.Port, "", dbname)
	if i.cfg.Password != "" {
		s += " password=" + connQuote(i.cfg.Password)
	}
	return s
}

// Connect opens a superuser connection.
func (i *Instance) Connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := i.superuser().ConnConfig(i.cfg.Address, i.cfg.Port, "", "postgres")
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", i.cfg.Name, err)
	}
	// Lifeline's own statements (roles, slots) must not wait for a
	// synchronous standby: at bootstrap there is none yet.
	cfg.RuntimeParams["synchronous_commit"] = "local"
	cfg.RuntimeParams["application_name"] = "lifeline"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", i.cfg.Name, err)
	}
	return conn, nil
}

// Ping checks that the server accepts a query.
func (i *Instance) Ping(ctx context.Context) error {
	conn, err := i.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

// quote renders a postgresql.conf string: the configuration parser reads
// backslash escapes, so backslashes are doubled as well as quotes.
func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(v) + "'"
}

func connQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
