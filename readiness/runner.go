package readiness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/store"
)

// Store is what the runner reads and writes; *store.Store is one.
type Store interface {
	ReadSnapshot(ctx context.Context, workload string, opts ...clientv3.OpOption) (store.Snapshot, error)
	ReadControls(ctx context.Context, workload string, opts ...clientv3.OpOption) (store.Controls, error)
	Get(ctx context.Context, key string, v any, opts ...clientv3.OpOption) (int64, bool, error)
	Keys() store.Keys
	Readiness(ctx context.Context, workload string, opts ...clientv3.OpOption) ([]lifeline.Readiness, error)
	PutReadiness(ctx context.Context, r lifeline.Readiness) error
	RaiseAlarm(ctx context.Context, a lifeline.Alarm) error
}

var _ Store = (*store.Store)(nil)

// Notifier sends an alarm to the configured webhooks.
type Notifier interface {
	Notify(ctx context.Context, a lifeline.Alarm) error
}

// Probe finds what a failover to region would need on its hosts; nil
// where the hosts cannot be checked from here.
type Probe func(ctx context.Context, t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, region string) *Host

// DefaultEvery is how often the controller leader evaluates readiness: a
// region's state changes on the scale of seconds (a standby stops, a lag
// grows), and a round reads one snapshot per workload.
const DefaultEvery = 2 * time.Second

// Runner evaluates readiness; the controller leader runs it (Run), and
// `lifeline failover` checks with it (Check).
type Runner struct {
	T      *lifeline.Topology
	S      Store
	Notify Notifier // nil: alarms are only stored
	Probe  Probe    // nil: services and ports are not checked
	Every  time.Duration
	Log    *slog.Logger
	Now    func() time.Time

	last   map[string]lifeline.Readiness // by workload/region, as stored
	loaded map[string]bool               // workloads whose stored records were read
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Run evaluates every workload's standby regions every r.Every until ctx
// ends, storing each record and raising an alarm on every change.
func (r *Runner) Run(ctx context.Context) {
	every := r.Every
	if every <= 0 {
		every = DefaultEvery
	}
	r.last, r.loaded = nil, nil // a new leader starts from what is stored
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if err := r.Round(ctx); err != nil && ctx.Err() == nil {
			r.Log.Debug("readiness", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Round evaluates every workload once, stores what changed and raises an
// alarm when a region turns NOT READY or READY again.
func (r *Runner) Round(ctx context.Context) error {
	var errs []error
	for i := range r.T.Workloads {
		w := &r.T.Workloads[i]
		if err := r.round(ctx, w); err != nil {
			errs = append(errs, fmt.Errorf("readiness of %s: %w", w.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) round(ctx context.Context, w *lifeline.Workload) error {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if r.last == nil {
		r.last, r.loaded = map[string]lifeline.Readiness{}, map[string]bool{}
	}
	if !r.loaded[w.Name] {
		stored, err := r.S.Readiness(qctx, w.Name)
		if err != nil {
			return err
		}
		for _, rec := range stored {
			r.last[w.Name+"/"+rec.Region] = rec
		}
		r.loaded[w.Name] = true
	}
	recs, err := r.Check(qctx, w)
	if err != nil {
		return err
	}
	var errs []error
	for _, rec := range recs {
		key := w.Name + "/" + rec.Region
		prev, seen := r.last[key]
		rec.Since, rec.Alarm = prev.Since, prev.Alarm
		if !seen || prev.Ready != rec.Ready {
			rec.Since = rec.Evaluated
			if err := r.alarm(qctx, w, prev, seen, &rec); err != nil {
				errs = append(errs, err)
			}
		}
		if err := r.S.PutReadiness(qctx, rec); err != nil {
			errs = append(errs, err)
			continue
		}
		r.last[key] = rec
	}
	return errors.Join(errs...)
}

// alarm raises the alarm of a change: NOT READY (a warning that stays
// active) or READY again (which clears it).
func (r *Runner) alarm(ctx context.Context, w *lifeline.Workload, prev lifeline.Readiness, seen bool, rec *lifeline.Readiness) error {
	at := rec.Evaluated
	var a lifeline.Alarm
	if !rec.Ready {
		var f []string
		for _, c := range rec.Failing() {
			f = append(f, c.Name+": "+c.Detail)
		}
		a = lifeline.Alarm{ID: fmt.Sprintf("not-ready-%s-%d", rec.Region, at.UnixNano()), Workload: w.Name, Kind: "not-ready", Severity: "warning",
			Summary: fmt.Sprintf("%s is NOT READY to take over %s: %s", rec.Region, w.Name, strings.Join(f, "; ")), Raised: at}
		rec.Alarm = a.ID
	} else {
		if !seen {
			return nil // READY from the start: nothing changed
		}
		if prev.Alarm != "" {
			old := lifeline.Alarm{ID: prev.Alarm, Workload: w.Name, Kind: "not-ready", Severity: "warning", Raised: prev.Since, Cleared: at,
				Summary: fmt.Sprintf("%s was NOT READY to take over %s", rec.Region, w.Name)}
			var stored lifeline.Alarm
			if _, found, err := r.S.Get(ctx, r.S.Keys().AlarmPrefix(w.Name)+prev.Alarm, &stored); err == nil && found {
				old = stored
				old.Cleared = at
			}
			if err := r.S.RaiseAlarm(ctx, old); err != nil {
				return err
			}
		}
		a = lifeline.Alarm{ID: fmt.Sprintf("ready-%s-%d", rec.Region, at.UnixNano()), Workload: w.Name, Kind: "ready", Severity: "info",
			Summary: fmt.Sprintf("%s is READY to take over %s again", rec.Region, w.Name), Raised: at, Cleared: at}
		rec.Alarm = ""
	}
	if err := r.S.RaiseAlarm(ctx, a); err != nil {
		return err
	}
	r.Log.Warn("readiness changed", "workload", w.Name, "region", rec.Region, "ready", rec.Ready, "summary", a.Summary)
	if r.Notify != nil {
		if err := r.Notify.Notify(ctx, a); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
	}
	return nil
}

// Check evaluates a workload's standby regions now, without storing.
func (r *Runner) Check(ctx context.Context, w *lifeline.Workload) ([]lifeline.Readiness, error) {
	ins, err := r.Gather(ctx, w)
	if err != nil {
		return nil, err
	}
	out := make([]lifeline.Readiness, 0, len(ins))
	for _, in := range ins {
		out = append(out, Evaluate(in))
	}
	return out, nil
}

// Gather reads what each standby region of w is judged on.
func (r *Runner) Gather(ctx context.Context, w *lifeline.Workload) ([]Input, error) {
	snap, err := r.S.ReadSnapshot(ctx, w.Name, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	if !snap.HasState {
		return nil, fmt.Errorf("%s: %w", w.Name, store.ErrNoState)
	}
	controls, err := r.S.ReadControls(ctx, w.Name, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	witness := 0
	for _, h := range snap.Health {
		if h.Vantage == lifeline.WitnessSite {
			witness++
		}
	}
	var verify *lifeline.VerifyRecord
	var v lifeline.VerifyRecord
	if _, found, err := r.S.Get(ctx, r.S.Keys().BackupState(w.Name, "verify"), &v, clientv3.WithSerializable()); err != nil {
		return nil, err
	} else if found {
		verify = &v
	}
	now := r.now()
	var ins []Input
	for _, region := range r.T.RegionNames() {
		if region == snap.State.Active {
			continue
		}
		in := Input{T: r.T, W: w, State: snap.State, Region: region, Reports: snap.Reports, Controls: controls.Records,
			Verify: verify, WitnessResults: witness, Now: now}
		var c lifeline.CopyRecord
		if _, found, err := r.S.Get(ctx, r.S.Keys().BackupState(w.Name, "copy-"+region), &c, clientv3.WithSerializable()); err != nil {
			return nil, err
		} else if found {
			in.Copy = &c
		}
		if r.Probe != nil {
			in.Host = r.Probe(ctx, r.T, w, snap.State, region)
		}
		ins = append(ins, in)
	}
	return ins, nil
}

// LocalProbe checks a local topology's hosts, which are all this machine:
// each service's command is looked up ("lifeline" is binary), and each
// address a failover would listen on is dialled: a connection accepted
// means something listens there. It never binds the address itself, so
// a service instance starting there at that moment (a failover's scale
// step) cannot find it taken by the probe.
func LocalProbe(binary string) Probe {
	return func(ctx context.Context, t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, region string) *Host {
		h := &Host{Commands: map[string]error{}, Ports: map[string]error{}}
		for _, s := range w.Services {
			if len(s.Command) == 0 {
				continue
			}
			name := s.Command[0]
			if name == "lifeline" && binary != "" {
				_, err := os.Stat(binary)
				h.Commands[name] = err
				continue
			}
			_, err := exec.LookPath(name)
			h.Commands[name] = err
		}
		d := net.Dialer{Timeout: probeTimeout}
		for _, addr := range FailoverAddresses(t, w, st, region) {
			if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
				c.Close()
				h.Ports[addr] = errors.New("in use: something listens there")
			}
		}
		return h
	}
}

// probeTimeout bounds a dial to a loopback address: refused at once when
// nothing listens; a listener accepts within it.
const probeTimeout = 500 * time.Millisecond
