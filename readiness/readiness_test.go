package readiness_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/readiness"
	"github.com/lifeline-dr/lifeline/spec"
)

const topo = `name: shop
regions:
  - {name: eu-west, zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}]}
  - {name: eu-central, zones: [{name: a, address: 127.0.2.1}]}
witness: {address: 127.0.3.1}
workloads:
  - name: orders
    strategy: warm-standby
    objectives: {rpo: 1s, rto: 30s}
    active: eu-west
    failover: auto
    services: [{name: api, command: [lifeline, example-app], replicas: {active: 2, standby: 1}}]
  - name: ledger
    strategy: backup-restore
    objectives: {rpo: 5m, rto: 30m}
    active: eu-west
    database: {port: 5442}
    backups: {full: 6h}
`

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var settings = map[string]string{"max_connections": "100", "max_worker_processes": "8", "max_wal_senders": "10",
	"max_prepared_transactions": "0", "max_locks_per_transaction": "64", "wal_level": "replica", "archive_mode": "on",
	"wal_log_hints": "on", "data_checksums": "off"}

func clone(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ready is an input on which every check passes.
func ready(t *testing.T, workload string) readiness.Input {
	t.Helper()
	top, err := spec.Parse("x.yaml", []byte(topo))
	if err != nil {
		t.Fatal(err)
	}
	w, err := top.Workload(workload)
	if err != nil {
		t.Fatal(err)
	}
	in := readiness.Input{T: top, W: w, State: top.InitialState(w, now), Region: "eu-central", Now: now,
		Controls: map[string]lifeline.ControlRecord{}, WitnessResults: 4,
		Host: &readiness.Host{Commands: map[string]error{"lifeline": nil}, Ports: map[string]error{}}}
	if w.Strategy.StandbyDatabase() {
		in.Reports = map[string]lifeline.NodeStatus{
			"eu-west/a": {Node: "eu-west/a", Role: lifeline.RolePrimary, Running: true, Healthy: true, Reported: now, ServerVersion: 150010, Settings: settings,
				Replicas: []lifeline.ReplicaStatus{{Name: "eu_central_a", Connected: true, ReplayLag: 0.02}}},
			"eu-west/b":    {Node: "eu-west/b", Role: lifeline.RoleSyncStandby, Running: true, InRecovery: true, Streaming: true, Reported: now},
			"eu-central/a": {Node: "eu-central/a", Role: lifeline.RoleStandby, Running: true, InRecovery: true, Streaming: true, Reported: now, ServerVersion: 150012, Settings: clone(settings)},
		}
	} else {
		in.Copy = &lifeline.CopyRecord{Region: "eu-central", From: "eu-west", At: now, InSyncAt: now, NewestWAL: "000000010000000000000009",
			SourceWAL: "000000010000000000000009", Backup: "20260301T100000Z"}
		in.Verify = &lifeline.VerifyRecord{At: now.Add(-time.Hour), Region: "eu-west", Backup: "20260301T100000Z", Passed: true, RestoreSeconds: 3}
	}
	return in
}

func TestEvaluate(t *testing.T) {
	for _, c := range []struct {
		name     string
		workload string
		edit     func(in *readiness.Input)
		failing  []string
	}{
		{"streaming ready", "orders", func(*readiness.Input) {}, nil},
		{"backup-restore ready", "ledger", func(*readiness.Input) {}, nil},
		{"fenced", "orders", func(in *readiness.Input) { in.State.Fenced = []string{"eu-central"} }, []string{readiness.CheckRegion}},
		{"routing off", "orders", func(in *readiness.Input) {
			in.Controls["eu-central"] = lifeline.ControlRecord{On: false, Actor: "ana", Changed: now}
		}, []string{readiness.CheckRouting}},
		{"standby stopped", "orders", func(in *readiness.Input) { delete(in.Reports, "eu-central/a") }, []string{readiness.CheckStandby, readiness.CheckLag}},
		{"standby report stale", "orders", func(in *readiness.Input) {
			st := in.Reports["eu-central/a"]
			st.Reported = now.Add(-time.Minute)
			in.Reports["eu-central/a"] = st
		}, []string{readiness.CheckStandby, readiness.CheckLag}},
		{"standby not streaming", "orders", func(in *readiness.Input) {
			st := in.Reports["eu-central/a"]
			st.Streaming = false
			in.Reports["eu-central/a"] = st
		}, []string{readiness.CheckStandby, readiness.CheckLag}},
		{"postgres down on the standby", "orders", func(in *readiness.Input) {
			in.Reports["eu-central/a"] = lifeline.NodeStatus{Node: "eu-central/a", Reported: now, Error: "postgres is not running"}
		}, []string{readiness.CheckStandby, readiness.CheckLag}},
		{"lag beyond the rpo", "orders", func(in *readiness.Input) {
			in.Reports["eu-west/a"].Replicas[0].ReplayLag = 2.5
		}, []string{readiness.CheckLag}},
		{"lag at the rpo", "orders", func(in *readiness.Input) {
			in.Reports["eu-west/a"].Replicas[0].ReplayLag = 1
		}, nil},
		{"primary gone: in recovery is enough", "orders", func(in *readiness.Input) {
			delete(in.Reports, "eu-west/a")
			st := in.Reports["eu-central/a"]
			st.Streaming = false
			in.Reports["eu-central/a"] = st
		}, nil},
		{"other major version", "orders", func(in *readiness.Input) {
			st := in.Reports["eu-central/a"]
			st.ServerVersion = 160002
			in.Reports["eu-central/a"] = st
		}, []string{readiness.CheckVersion}},
		{"version not reported", "orders", func(in *readiness.Input) {
			st := in.Reports["eu-central/a"]
			st.ServerVersion = 0
			in.Reports["eu-central/a"] = st
		}, nil},
		{"fewer connections", "orders", func(in *readiness.Input) { in.Reports["eu-central/a"].Settings["max_connections"] = "50" }, []string{readiness.CheckSettings}},
		{"more connections", "orders", func(in *readiness.Input) { in.Reports["eu-central/a"].Settings["max_connections"] = "200" }, nil},
		{"other wal_level", "orders", func(in *readiness.Input) { in.Reports["eu-central/a"].Settings["wal_level"] = "logical" }, []string{readiness.CheckSettings}},
		{"command missing", "orders", func(in *readiness.Input) {
			in.Host.Commands["lifeline"] = errors.New("not found")
		}, []string{readiness.CheckServices}},
		{"port taken", "orders", func(in *readiness.Input) {
			in.Host.Ports["127.0.2.1:8081"] = errors.New("in use")
		}, []string{readiness.CheckPorts}},
		{"a port not used by a failover", "orders", func(in *readiness.Input) {
			in.Host.Ports["127.0.2.1:8080"] = errors.New("in use") // the standby instance's own
		}, nil},
		{"hosts not checkable", "orders", func(in *readiness.Input) { in.Host = nil }, nil},
		{"witness silent", "orders", func(in *readiness.Input) { in.WitnessResults = 0 }, []string{readiness.CheckWitness}},
		{"witness silent with approve", "ledger", func(in *readiness.Input) { in.WitnessResults = 0 }, nil},
		{"no copy", "ledger", func(in *readiness.Input) { in.Copy = nil }, []string{readiness.CheckBackups}},
		{"copy without a backup", "ledger", func(in *readiness.Input) { in.Copy.Backup = "" }, []string{readiness.CheckBackups}},
		{"backup too old", "ledger", func(in *readiness.Input) { in.Copy.Backup = "20260301T050000Z" }, []string{readiness.CheckBackups}},
		{"backup just fresh", "ledger", func(in *readiness.Input) { in.Copy.Backup = "20260301T052500Z" }, nil},
		{"copy failing", "ledger", func(in *readiness.Input) { in.Copy.Error = "permission denied" }, []string{readiness.CheckBackups}},
		{"wal copy behind the rpo", "ledger", func(in *readiness.Input) {
			in.Copy.NewestWAL, in.Copy.InSyncAt = "000000010000000000000008", now.Add(-6*time.Minute)
		}, []string{readiness.CheckBackups}},
		{"no drill yet", "ledger", func(in *readiness.Input) { in.Verify = nil }, nil},
		{"drill failed", "ledger", func(in *readiness.Input) { in.Verify.Passed, in.Verify.Failure = false, "amcheck" }, []string{readiness.CheckDrill}},
		{"database port taken (backup-restore)", "ledger", func(in *readiness.Input) {
			in.Host.Ports["127.0.2.1:5442"] = errors.New("in use")
		}, []string{readiness.CheckPorts}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := ready(t, c.workload)
			c.edit(&in)
			got := readiness.Evaluate(in)
			var failing []string
			for _, f := range got.Failing() {
				failing = append(failing, f.Name)
			}
			if diff := cmp.Diff(c.failing, failing); diff != "" {
				t.Errorf("failing checks (-want +got):\n%s\n%+v", diff, got.Checks)
			}
			if got.Ready != (len(c.failing) == 0) {
				t.Errorf("ready = %v with failing %v", got.Ready, failing)
			}
		})
	}
}

func TestFailoverAddresses(t *testing.T) {
	in := ready(t, "orders")
	if diff := cmp.Diff([]string{"127.0.2.1:8081"}, readiness.FailoverAddresses(in.T, in.W, in.State, "eu-central")); diff != "" {
		t.Errorf("warm-standby (-want +got):\n%s", diff)
	}
	in = ready(t, "ledger")
	if diff := cmp.Diff([]string{"127.0.2.1:5442"}, readiness.FailoverAddresses(in.T, in.W, in.State, "eu-central")); diff != "" {
		t.Errorf("backup-restore (-want +got):\n%s", diff)
	}
}
