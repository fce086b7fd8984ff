package compute

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/proc"
)

// Driver runs instances as child processes of the agent: they die with it
// (parent-death signal) and are restarted, with backoff, when they exit.
type Driver struct {
	// Binary replaces a command's "lifeline" (the example app runs as
	// `lifeline example-app`).
	Binary string
	// LogDir receives each instance's output.
	LogDir string
	// Env returns what is added to an instance's environment. Of the
	// agent's own environment an instance gets only what any process
	// needs (scrubbedEnv): never the secrets the spec refers to.
	Env func(Instance) []string
	// Check, when set, is the instance's health check (the vantage
	// points' own probe); an instance that fails it FailAfter times in a
	// row, CheckEvery apart, once past its first StartGrace, is
	// restarted (with the same back-off as one that exits).
	Check      func(ctx context.Context, inst Instance) error
	CheckEvery time.Duration
	FailAfter  int
	StartGrace time.Duration
	Log        *slog.Logger

	mu      sync.Mutex
	running map[string]*instanceProc // by Name
}

type instanceProc struct {
	inst   Instance
	cancel context.CancelFunc
	done   chan struct{}
}

// Reconcile runs exactly the given instances: new ones start, missing ones stop.
func (d *Driver) Reconcile(ctx context.Context, t *lifeline.Topology, want []Instance) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running == nil {
		d.running = map[string]*instanceProc{}
	}
	keep := map[string]bool{}
	for _, inst := range want {
		keep[inst.Name()] = true
		if _, ok := d.running[inst.Name()]; ok {
			continue
		}
		w, err := t.Workload(inst.Workload)
		if err != nil {
			continue
		}
		var cmd []string
		for _, s := range w.Services {
			if s.Name == inst.Service {
				cmd = s.Command
			}
		}
		ictx, cancel := context.WithCancel(ctx)
		p := &instanceProc{inst: inst, cancel: cancel, done: make(chan struct{})}
		d.running[inst.Name()] = p
		go d.supervise(ictx, p, cmd)
	}
	for name, p := range d.running {
		if !keep[name] {
			p.cancel()
			<-p.done
			delete(d.running, name)
		}
	}
}

// Stop stops every instance.
func (d *Driver) Stop() {
	d.Reconcile(context.Background(), &lifeline.Topology{}, nil)
}

func (d *Driver) supervise(ctx context.Context, p *instanceProc, command []string) {
	defer close(p.done)
	backoff := time.Second
	for ctx.Err() == nil {
		started := time.Now()
		err := d.runOnce(ctx, p.inst, command)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		d.Log.Warn("service instance exited; restarting", "instance", p.inst.Name(), "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (d *Driver) runOnce(ctx context.Context, inst Instance, command []string) error {
	if len(command) == 0 {
		return fmt.Errorf("no command")
	}
	args := make([]string, len(command))
	for i, a := range command {
		args[i] = strings.ReplaceAll(a, "{addr}", inst.Addr)
	}
	if args[0] == "lifeline" && d.Binary != "" {
		args[0] = d.Binary
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = scrubbedEnv(os.Environ())
	if d.Env != nil {
		cmd.Env = append(cmd.Env, d.Env(inst)...)
	}
	cmd.Env = append(cmd.Env, "LIFELINE_INSTANCE="+inst.Name(), "LIFELINE_LISTEN="+inst.Addr,
		"LIFELINE_REGION="+inst.Node.Region, "LIFELINE_ZONE="+inst.Node.Zone)
	if d.LogDir != "" {
		_ = os.MkdirAll(d.LogDir, 0o700)
		f, err := os.OpenFile(filepath.Join(d.LogDir, strings.NewReplacer("/", "-", "@", "-", "#", "-").Replace(inst.Name())+".log"),
			os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err == nil {
			defer f.Close()
			cmd.Stdout, cmd.Stderr = f, f
		}
	}
	var exitErr error
	done, err := proc.Start(cmd, syscall.SIGTERM, func(err error) { exitErr = err })
	if err != nil {
		return err
	}
	d.Log.Info("service instance started", "instance", inst.Name(), "pid", cmd.Process.Pid, "addr", inst.Addr)
	unhealthy := d.watchHealth(ctx, inst, done)
	select {
	case <-done:
		return exitErr
	case why := <-unhealthy:
		d.Log.Warn("service instance fails its health check; restarting it", "instance", inst.Name(), "err", why)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return fmt.Errorf("unhealthy: %w", why)
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return ctx.Err()
	}
}

// watchHealth checks a running instance and sends the last error once it
// failed FailAfter checks in a row; nothing when Check is not set.
func (d *Driver) watchHealth(ctx context.Context, inst Instance, exited <-chan struct{}) <-chan error {
	out := make(chan error, 1)
	if d.Check == nil || d.FailAfter <= 0 || d.CheckEvery <= 0 {
		return out
	}
	go func() {
		select {
		case <-time.After(d.StartGrace):
		case <-exited:
			return
		case <-ctx.Done():
			return
		}
		tick := time.NewTicker(d.CheckEvery)
		defer tick.Stop()
		fails := 0
		for {
			cctx, cancel := context.WithTimeout(ctx, d.CheckEvery)
			err := d.Check(cctx, inst)
			cancel()
			if err == nil {
				fails = 0
			} else if fails++; fails >= d.FailAfter {
				out <- err
				return
			}
			select {
			case <-tick.C:
			case <-exited:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// scrubbedEnv keeps the variables of env that say where and how a process
// runs (PATH, HOME, the user, the locale, the time zone, the temporary
// directory) and drops the rest: the agent's environment holds what the
// spec's env: secrets name (database passwords, the backup key), which a
// service must not see.
func scrubbedEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "USER", k == "LOGNAME", k == "SHELL", k == "TMPDIR", k == "TZ",
			k == "LANG", k == "LANGUAGE", strings.HasPrefix(k, "LC_"):
			out = append(out, kv)
		}
	}
	return out
}
