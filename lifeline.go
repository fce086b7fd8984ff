// Package lifeline holds the vocabulary of the disaster-recovery control plane:
// the topology a user declares (regions, zones, workloads, strategies,
// objectives) and the state the engine reports about it (roles, LSNs, lag).
//
// It imports only the standard library. Adapters (postgres, store, wan, agent)
// implement behaviour around these types; cmd/lifeline wires them together.
package lifeline

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Strategy is one of the four DR strategies, from the cheapest to the fastest.
type Strategy string

const (
	BackupRestore Strategy = "backup-restore"
	PilotLight    Strategy = "pilot-light"
	WarmStandby   Strategy = "warm-standby"
	ActiveActive  Strategy = "active-active"
)

// Strategies lists the valid strategies in the order of the DR spectrum.
var Strategies = []Strategy{BackupRestore, PilotLight, WarmStandby, ActiveActive}

// Valid reports whether s is one of the four strategies.
func (s Strategy) Valid() bool {
	for _, v := range Strategies {
		if s == v {
			return true
		}
	}
	return false
}

// StandbyDatabase reports whether the strategy keeps a streaming standby
// database in the standby regions. backup-restore keeps only backups there.
func (s Strategy) StandbyDatabase() bool { return s != BackupRestore && s != "" }

// FailoverMode says who may decide a failover across regions.
type FailoverMode string

const (
	// FailoverApprove waits for a human to run `lifeline approve`.
	FailoverApprove FailoverMode = "approve"
	// FailoverAuto fails over across regions when a witness quorum agrees.
	FailoverAuto FailoverMode = "auto"
)

// Role is what a node's database does for its workload.
type Role string

const (
	RolePrimary     Role = "primary"
	RoleSyncStandby Role = "sync-standby"
	RoleStandby     Role = "standby"
	// RoleNone is a node that holds no database for the workload
	// (a standby region of a backup-restore workload).
	RoleNone Role = "none"
)

// Mode says where a topology runs.
type Mode string

const (
	// ModeLocal runs every node of the topology on this machine, each on its
	// own loopback address, with cross-region links emulated by the wan package.
	ModeLocal Mode = "local"
	// ModeDistributed runs one agent per real host.
	ModeDistributed Mode = "distributed"
)

// Isolation says how a local topology keeps its hosts apart on one machine.
// It is not part of the spec: `lifeline up --isolation` chooses it, and
// hands it to the processes it starts (LIFELINE_ISOLATION).
type Isolation string

const (
	// IsolationLoopback puts every host on a loopback address of the
	// machine; the wan package's routes carry what crosses regions, add
	// its latency and cut links.
	IsolationLoopback Isolation = "loopback"
	// IsolationNetns puts every host in a network namespace of its own
	// with its spec address: processes connect directly, as between real
	// hosts; partitions drop packets and the latency delays them in the
	// kernel's path (local/netns.go).
	IsolationNetns Isolation = "netns"
)

// NodeID names a node by its region and zone: "eu-west/a".
type NodeID struct {
	Region string
	Zone   string
}

func (n NodeID) String() string { return n.Region + "/" + n.Zone }

// Slug is the node's name where only [a-z0-9_] is allowed: PostgreSQL
// application names and replication slot names.
func (n NodeID) Slug() string {
	var b strings.Builder
	for _, r := range strings.ToLower(n.Region + "_" + n.Zone) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// ParseNodeID parses "REGION/ZONE".
func ParseNodeID(s string) (NodeID, error) {
	region, zone, ok := strings.Cut(s, "/")
	if !ok || region == "" || zone == "" || strings.Contains(zone, "/") {
		return NodeID{}, fmt.Errorf("node %q: want REGION/ZONE, e.g. eu-west/a", s)
	}
	return NodeID{Region: region, Zone: zone}, nil
}

// Topology is a parsed and validated lifeline.yaml.
type Topology struct {
	Name      string
	Mode      Mode
	Control   Control
	Regions   []Region
	Witness   *Witness
	Links     Links
	Router    Router
	Alerts    Alerts
	API       API
	Workloads []Workload
	// Isolation of a local topology (empty: loopback); see Isolation.
	Isolation Isolation `json:",omitempty"`
}

// RoutedWAN reports whether connections between this topology's hosts go
// through the wan package's routes: a local topology on loopback. In a
// namespace topology and on real hosts they are direct.
func (t *Topology) RoutedWAN() bool {
	return t.Mode == ModeLocal && t.Isolation != IsolationNetns
}

// API is where the operator surface listens: every agent serves the HTTP
// API, the dashboard and /metrics over HTTPS on its node's address at
// Port; the router serves /metrics on its address at the same port.
type API struct {
	Port int
}

// Alerts says where alarms are sent besides the control store.
type Alerts struct {
	Webhooks []Webhook
}

// Webhook receives every alarm as a JSON POST, signed with HMAC-SHA256 of
// the body under Secret (header X-Lifeline-Signature: sha256=HEX).
type Webhook struct {
	URL    string
	Secret Secret
}

// Router is where the workloads' entry points listen.
type Router struct {
	// Address holds the global entry points: DNS, the global HTTP front
	// door, and each workload's writer and reader endpoints.
	Address string
	// DNSPort and HTTPPort of the entry points; each region's own HTTP
	// front door listens on the region's Entry address at HTTPPort.
	DNSPort  int
	HTTPPort int
	Health   HealthChecks
}

// HealthChecks tune the checks that vantage points (one per site) make of
// every service instance, regional entry point and database.
type HealthChecks struct {
	Interval time.Duration
	Timeout  time.Duration
	// Fails and Passes are the consecutive results a vantage point needs
	// to report a target down or up again; Quorum how many vantage points
	// must agree (a majority of the live ones is needed in any case).
	Fails  int
	Passes int
	Quorum int
}

// Control configures the control store and the timing of leases.
type Control struct {
	// Endpoints of an external etcd cluster; empty means embedded members.
	Endpoints []string
	// ClientPort and PeerPort of embedded etcd members.
	ClientPort int
	PeerPort   int
	// LeaseTTL is how long a primary may go without renewing its lease
	// before another node may be promoted. Shorter fails over sooner; too
	// short fences a healthy primary during an etcd hiccup.
	LeaseTTL time.Duration
	// CheckInterval is how often agents report health and renew leases.
	CheckInterval time.Duration
	// RegionDownAfter is how long every node of a region must fail the
	// checks of the witness and of another region (and be silent in the
	// control store) before the region is declared down. Shorter detects
	// sooner; too short declares a region down on a brief partition (its
	// failover still waits for approval, or for the witness quorum).
	RegionDownAfter time.Duration
}

// Embedded reports whether etcd members run inside Lifeline's processes.
func (c Control) Embedded() bool { return len(c.Endpoints) == 0 }

// Region is a failure domain far from the others.
type Region struct {
	Name  string
	Zones []Zone
	// Entry is the address of the region's HTTP front door (its load
	// balancer); the first zone's address by default.
	Entry string
}

// Zone is one node's place inside a region.
type Zone struct {
	Name    string
	Address string
}

// Witness is the third site that only votes.
type Witness struct {
	Address string
}

// Links describes the emulated network of a local topology.
type Links struct {
	CrossRegion Link
}

// Link is the emulated behaviour of a network link.
type Link struct {
	Latency time.Duration
}

// Workload is services + one database + routing, protected by one strategy.
type Workload struct {
	Name       string
	Strategy   Strategy
	Objectives Objectives
	Active     string
	Failover   FailoverMode
	Database   Database
	Backups    Backups
	Services   []Service
	Routing    Routing
	// Impact is what the workload's failures cost the business; the
	// spec's tier defaults fill what it leaves out (spec.DefaultImpact).
	Impact Impact
	// Contacts are the people a continuity plan names.
	Contacts []Contact
}

// AppRole is the database role of the workload's services; their tables
// live in the schema of the same name.
func (w *Workload) AppRole() string {
	return "app_" + strings.ReplaceAll(w.Name, "-", "_")
}

// Objectives are the recovery objectives the strategy must meet.
type Objectives struct {
	RPO time.Duration
	RTO time.Duration
}

// Database configures the workload's PostgreSQL.
type Database struct {
	Engine string
	// Sync is the synchronous replication rule inside the active region:
	// "ANY 1" waits for one in-region standby; "" replicates asynchronously.
	Sync                string
	Port                int
	Superuser           string
	Password            Secret
	ReplicationUser     string
	ReplicationPassword Secret
	// Parameters are extra postgresql.conf settings.
	Parameters map[string]string
}

// Backups configures the workload's backup repository.
type Backups struct {
	// Repository is a gocloud.dev/blob URL; {region} is replaced by the region name.
	Repository string
	Full       time.Duration
	Retention  time.Duration
	// RetentionFull keeps this many full backups instead of a time window.
	RetentionFull int
	// Key names the encryption key: "env:NAME" or "file:PATH".
	Key Secret
}

// Service is a process the agents run for the workload.
type Service struct {
	Name     string
	Command  []string
	Health   string
	Replicas Replicas
}

// Replicas is the number of service instances per region role.
type Replicas struct {
	Active  int
	Standby int
}

// Routing configures how clients reach the workload.
type Routing struct {
	Hostname string
	Policy   string
	TTL      time.Duration
	// WriterPort and ReaderPort are the writer and reader endpoints' ports
	// on the router's address.
	WriterPort int
	ReaderPort int
	// Weights per region, for the weighted policy (absent regions weigh 1).
	Weights map[string]int
	// Latency maps client subnets to their round-trip time to each region,
	// for the latency policy; Geo maps client subnets to a region, for the
	// geolocation policy.
	Latency []LatencyRule
	Geo     []GeoRule
}

// LatencyRule is the measured distance from a client subnet to each region.
type LatencyRule struct {
	Subnet string
	RTT    map[string]time.Duration
}

// GeoRule sends a client subnet to a region.
type GeoRule struct {
	Subnet string
	Region string
}

// Secret is a reference to a secret: "env:NAME" or "file:PATH". The value is
// read only when needed, so a spec never holds a password.
type Secret string

// Set reports whether a secret was given.
func (s Secret) Set() bool { return s != "" }

// Check validates the reference without reading it.
func (s Secret) Check() error {
	if s == "" {
		return nil
	}
	kind, name, ok := strings.Cut(string(s), ":")
	if !ok || name == "" || (kind != "env" && kind != "file") {
		return fmt.Errorf("secret %q: want env:NAME or file:PATH", string(s))
	}
	return nil
}

// Resolve reads the secret's value.
func (s Secret) Resolve() (string, error) {
	if err := s.Check(); err != nil {
		return "", err
	}
	kind, name, _ := strings.Cut(string(s), ":")
	switch kind {
	case "env":
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return "", fmt.Errorf("secret %s: environment variable %s is not set", s, name)
		}
		return v, nil
	default:
		b, err := os.ReadFile(name)
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", s, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("secret %s: file is empty", s)
		}
		return v, nil
	}
}

// ErrNotFound is returned when a named region, zone, node or workload does not exist.
var ErrNotFound = errors.New("not found")

// Region returns the named region.
func (t *Topology) Region(name string) (*Region, error) {
	for i := range t.Regions {
		if t.Regions[i].Name == name {
			return &t.Regions[i], nil
		}
	}
	return nil, fmt.Errorf("region %q: %w (regions: %s)", name, ErrNotFound, strings.Join(t.RegionNames(), ", "))
}

// RegionNames lists the regions in spec order.
func (t *Topology) RegionNames() []string {
	names := make([]string, len(t.Regions))
	for i, r := range t.Regions {
		names[i] = r.Name
	}
	return names
}

// Workload returns the named workload.
func (t *Topology) Workload(name string) (*Workload, error) {
	names := make([]string, 0, len(t.Workloads))
	for i := range t.Workloads {
		if t.Workloads[i].Name == name {
			return &t.Workloads[i], nil
		}
		names = append(names, t.Workloads[i].Name)
	}
	return nil, fmt.Errorf("workload %q: %w (workloads: %s)", name, ErrNotFound, strings.Join(names, ", "))
}

// Nodes lists every node in spec order.
func (t *Topology) Nodes() []NodeID {
	var ids []NodeID
	for _, r := range t.Regions {
		for _, z := range r.Zones {
			ids = append(ids, NodeID{Region: r.Name, Zone: z.Name})
		}
	}
	return ids
}

// Zone returns the zone of a node.
func (t *Topology) Zone(id NodeID) (*Zone, error) {
	r, err := t.Region(id.Region)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	for i := range r.Zones {
		if r.Zones[i].Name == id.Zone {
			return &r.Zones[i], nil
		}
	}
	return nil, fmt.Errorf("node %s: zone %q: %w", id, id.Zone, ErrNotFound)
}

// Address returns the host address of a node.
func (t *Topology) Address(id NodeID) string {
	z, err := t.Zone(id)
	if err != nil {
		return ""
	}
	return z.Address
}

// Site is a place that hosts an etcd member: the first node of each region,
// and the witness. Losing any one site leaves a quorum when there are three.
type Site struct {
	Name    string // region name, or "witness"
	Node    NodeID // zero for the witness
	Address string
}

// WitnessSite is the name of the witness's site.
const WitnessSite = "witness"

// Sites lists where embedded etcd members run, placed as on real hosts.
func (t *Topology) Sites() []Site {
	var sites []Site
	for _, r := range t.Regions {
		if len(r.Zones) == 0 {
			continue
		}
		id := NodeID{Region: r.Name, Zone: r.Zones[0].Name}
		sites = append(sites, Site{Name: r.Name, Node: id, Address: r.Zones[0].Address})
	}
	if t.Witness != nil {
		sites = append(sites, Site{Name: WitnessSite, Address: t.Witness.Address})
	}
	return sites
}

// SiteOf returns the etcd site embedded in a node's agent, if any.
func (t *Topology) SiteOf(id NodeID) (Site, bool) {
	for _, s := range t.Sites() {
		if s.Node == id {
			return s, true
		}
	}
	return Site{}, false
}

// InitialPrimary is the node that is bootstrapped as the workload's primary:
// the first zone of the active region.
func (t *Topology) InitialPrimary(w *Workload) NodeID {
	r, err := t.Region(w.Active)
	if err != nil || len(r.Zones) == 0 {
		return NodeID{}
	}
	return NodeID{Region: r.Name, Zone: r.Zones[0].Name}
}

// LeaseRecord is the value of a workload's primary lease key. The key lives
// under an etcd lease that only the primary's agent renews: while it exists,
// no other node may be promoted.
type LeaseRecord struct {
	Node  string `json:"node"`
	Epoch int64  `json:"epoch"`
}

// FailoverRecord is the history of one change of primary.
type FailoverRecord struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Seconds  float64   `json:"seconds"`
	LostLSN  string    `json:"from_lsn,omitempty"`
}

// NodeStatus is what an agent reports about its database, refreshed every
// check interval and kept under a lease so that a dead agent's report vanishes.
type NodeStatus struct {
	Node       string `json:"node"`
	Workload   string `json:"workload"`
	Role       Role   `json:"role"`
	Healthy    bool   `json:"healthy"`
	InRecovery bool   `json:"in_recovery"`
	// Running is true while the agent's PostgreSQL runs; Streaming while a
	// standby's WAL receiver is connected to its upstream.
	Running   bool `json:"running"`
	Streaming bool `json:"streaming"`
	// ServerVersion is the server's server_version_num (150010); Settings
	// the values of the settings a promotion depends on (PromotionSettings).
	ServerVersion int               `json:"server_version_num,omitempty"`
	Settings      map[string]string `json:"settings,omitempty"`
	// Fenced is set by a primary's agent that stopped its server because it
	// could not renew its lease.
	Fenced      bool   `json:"fenced,omitempty"`
	Address     string `json:"address"`
	Port        int    `json:"port"`
	AgentPID    int    `json:"agent_pid"`
	PostgresPID int    `json:"postgres_pid"`
	Timeline    int64  `json:"timeline"`
	LSN         string `json:"lsn"`
	ReceiveLSN  string `json:"receive_lsn,omitempty"`
	// ReceiveSince is the Reported time of the first report that showed
	// ReceiveLSN (the agent's clock, as Reported): the received position
	// has not moved from then to Reported. A failover reads a stream cut
	// off from a fenced primary as stalled from it, without waiting to see
	// the position stand still itself.
	ReceiveSince time.Time `json:"receive_since,omitzero"`
	// SpareLease is the etcd lease a node that is not primary keeps alive
	// for the primary role: a failover attaches the primary lease key to it
	// when it names the node, so the node promotes without a write of its own.
	SpareLease int64  `json:"spare_lease,omitempty"`
	Error      string `json:"error,omitempty"`
	// ArchiveError is why this node's WAL archiving could not be set up
	// (its server then runs without archive_command, and its WAL reaches
	// no backup); empty when archiving is on.
	ArchiveError string    `json:"archive_error,omitempty"`
	Reported     time.Time `json:"reported"`
	// Replicas is filled in by a primary from pg_stat_replication.
	Replicas []ReplicaStatus `json:"replicas,omitempty"`
}

// ReplicaStatus is one row of the primary's pg_stat_replication.
type ReplicaStatus struct {
	Name      string  `json:"name"`
	State     string  `json:"state"`
	SyncState string  `json:"sync_state"`
	SentLSN   string  `json:"sent_lsn"`
	FlushLSN  string  `json:"flush_lsn"`
	ReplayLSN string  `json:"replay_lsn"`
	ReplayLag float64 `json:"replay_lag_seconds"`
	LagBytes  int64   `json:"lag_bytes"`
	Connected bool    `json:"connected"`
}

// Fingerprint identifies the shape of a topology: what, once built, cannot
// change under a data directory without rebuilding it (names, addresses,
// ports, strategies). Objectives, routing and backup settings may change.
func (t *Topology) Fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "name=%s mode=%s etcd=%v/%d/%d\n", t.Name, t.Mode, t.Control.Endpoints, t.Control.ClientPort, t.Control.PeerPort)
	for _, r := range t.Regions {
		fmt.Fprintf(&b, "region=%s", r.Name)
		for _, z := range r.Zones {
			fmt.Fprintf(&b, " %s@%s", z.Name, z.Address)
		}
		b.WriteByte('\n')
	}
	if t.Witness != nil {
		fmt.Fprintf(&b, "witness=%s\n", t.Witness.Address)
	}
	for _, w := range t.Workloads {
		fmt.Fprintf(&b, "workload=%s strategy=%s port=%d users=%s,%s\n",
			w.Name, w.Strategy, w.Database.Port, w.Database.Superuser, w.Database.ReplicationUser)
	}
	return b.String()
}

// FenceMargin is how long before its lease could expire a primary that has
// not renewed it stops its server. It covers the time the stop takes and
// clock drift between the agent and etcd: fencing always completes before
// another node may be promoted.
func (c Control) FenceMargin() time.Duration {
	return max(2*c.CheckInterval, c.LeaseTTL/3)
}

// BackupRecord is what the last backup, copy and verification did; status
// shows it.
type BackupRecord struct {
	ID      string    `json:"id"`
	Node    string    `json:"node"`
	Region  string    `json:"region"`
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"`
	Bytes   int64     `json:"bytes"`
	Stored  int64     `json:"stored_bytes"`
	Error   string    `json:"error,omitempty"`
}

// VerifyRecord is the last restore drill.
type VerifyRecord struct {
	At             time.Time `json:"at"`
	Region         string    `json:"region"`
	Backup         string    `json:"backup"`
	Passed         bool      `json:"passed"`
	Failure        string    `json:"failure,omitempty"`
	RestoreSeconds float64   `json:"restore_seconds"`
	TotalSeconds   float64   `json:"total_seconds"`
	Tables         int       `json:"tables"`
	Rows           int64     `json:"rows"`
	// WithinRTO: for a backup-restore workload the drill is its failover,
	// so its duration is checked against the RTO.
	RTOSeconds float64 `json:"rto_seconds"`
	WithinRTO  bool    `json:"within_rto"`
}

// CopyRecord is the state of one region's copy of the active region's repository.
type CopyRecord struct {
	Region    string    `json:"region"`
	From      string    `json:"from"`
	At        time.Time `json:"at"`
	InSyncAt  time.Time `json:"in_sync_at"`
	NewestWAL string    `json:"newest_wal"`
	SourceWAL string    `json:"source_wal"`
	Backup    string    `json:"newest_backup"`
	Error     string    `json:"error,omitempty"`
}

// LagSeconds is how far the copy is behind: 0 while in sync, else the time
// since it last was.
func (c CopyRecord) LagSeconds(now time.Time) float64 {
	if c.NewestWAL == c.SourceWAL && c.Error == "" {
		return 0
	}
	if c.InSyncAt.IsZero() {
		return now.Sub(c.At).Seconds()
	}
	return now.Sub(c.InSyncAt).Seconds()
}
