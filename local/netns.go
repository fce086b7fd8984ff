package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/netns"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/wan"
)

// IsolationEnv carries a topology's isolation from `up` to the processes
// it starts: they are otherwise started exactly as on real hosts (agent
// --node R/Z -f SPEC, witness, router).
const IsolationEnv = "LIFELINE_ISOLATION"

// isolationFile records, in the data directory, the isolation its
// topology was built with: its etcd members know each other's peer
// addresses, which differ between the two.
const isolationFile = "isolation"

// Isolation choices of `up --isolation`.
const (
	IsolationAuto = "auto" // netns where it can be used, else loopback with a notice
)

// ApplyIsolation sets the isolation of a local topology from the
// environment `up` gives the processes it starts.
func ApplyIsolation(t *lifeline.Topology) error {
	v := os.Getenv(IsolationEnv)
	switch lifeline.Isolation(v) {
	case "", lifeline.IsolationLoopback:
	case lifeline.IsolationNetns:
		if t.Mode == lifeline.ModeLocal {
			t.Isolation = lifeline.IsolationNetns
		}
	default:
		return fmt.Errorf("%s=%q: want loopback or netns", IsolationEnv, v)
	}
	return nil
}

// chooseIsolation decides the isolation of `up`: what was asked, or by
// default (auto) netns where it can be used; a data directory keeps the
// isolation it was built with. notice says why netns was not taken.
func chooseIsolation(asked string, t *lifeline.Topology, dir string) (iso lifeline.Isolation, notice string, err error) {
	recorded := ""
	if b, err := os.ReadFile(filepath.Join(dir, isolationFile)); err == nil {
		recorded = strings.TrimSpace(string(b))
	} else if entries, _ := os.ReadDir(filepath.Join(dir, "nodes")); len(entries) > 0 {
		recorded = string(lifeline.IsolationLoopback) // made before namespaces existed
	}
	switch asked {
	case "", IsolationAuto:
		if recorded != "" {
			return lifeline.Isolation(recorded), "", nil
		}
		if why := netnsUnusable(t); why != nil {
			return lifeline.IsolationLoopback, fmt.Sprintf("network namespaces cannot be used (%v): running on loopback addresses", why), nil
		}
		return lifeline.IsolationNetns, "", nil
	case string(lifeline.IsolationLoopback), string(lifeline.IsolationNetns):
		if recorded != "" && recorded != asked {
			return "", "", fmt.Errorf("data dir %s was built with --isolation %s: its etcd members know each other's addresses that way; use it so, or another --data-dir", dir, recorded)
		}
		if asked == string(lifeline.IsolationNetns) {
			if why := netnsUnusable(t); why != nil {
				return "", "", fmt.Errorf("--isolation netns: %w (--isolation loopback runs every host on a loopback address instead)", why)
			}
		}
		return lifeline.Isolation(asked), "", nil
	default:
		return "", "", fmt.Errorf("--isolation %q: want auto, netns or loopback", asked)
	}
}

func recordIsolation(dir string, iso lifeline.Isolation) error {
	return os.WriteFile(filepath.Join(dir, isolationFile), []byte(string(iso)+"\n"), 0o644)
}

// netnsUnusable says why a topology cannot run in namespaces here.
func netnsUnusable(t *lifeline.Topology) error {
	if err := netns.Check(); err != nil {
		return err
	}
	if _, err := labHosts(t); err != nil {
		return err
	}
	return nil
}

// labHosts are a topology's hosts: each node, the witness (with the
// router when it listens on the witness's address), and the router when
// it has an address of its own; one segment per region, and one each for
// the witness and the router.
func labHosts(t *lifeline.Topology) ([]netns.HostSpec, error) {
	if ip, err := netip.ParseAddr(t.Router.Address); err != nil || ip.IsUnspecified() || ip == netip.MustParseAddr("127.0.0.1") {
		return nil, fmt.Errorf("the router's address %s cannot be a namespace's: set router.address, or give the spec a witness", t.Router.Address)
	}
	byParty := map[string][]string{}
	for ip, p := range wan.Parties(t) {
		byParty[p] = append(byParty[p], ip.String())
	}
	var hosts []netns.HostSpec
	add := func(name, segment, first string) {
		addrs := []string{first}
		for _, a := range byParty[name] {
			if a != first {
				addrs = append(addrs, a)
			}
		}
		sort.Strings(addrs[1:])
		hosts = append(hosts, netns.HostSpec{Name: name, Segment: segment, Addrs: addrs})
	}
	for _, id := range t.Nodes() {
		add(id.String(), id.Region, t.Address(id))
	}
	if t.Witness != nil {
		add(lifeline.WitnessSite, lifeline.WitnessSite, t.Witness.Address)
	}
	if _, ok := byParty[wan.RouterParty]; ok {
		add(wan.RouterParty, wan.RouterParty, t.Router.Address)
	}
	// A dry run of the lab's own checks (addresses it keeps for itself).
	for _, h := range hosts {
		for _, a := range h.Addrs {
			if a == "127.0.0.1" || strings.HasPrefix(a, "127.255.255.") {
				return nil, fmt.Errorf("host %s: address %s is kept for the namespaces' own use", h.Name, a)
			}
		}
	}
	return hosts, nil
}

// hostOf is the lab host a process of the topology runs in.
func (r *Runner) hostOf(name string) string {
	if name != routerName {
		return name
	}
	ip, _ := netip.ParseAddr(r.t.Router.Address)
	return wan.Parties(r.t)[ip]
}

// buildLab makes the namespaces, starts the delay line, and opens the
// front doors that listen on another host's address (a region's entry on
// its first node) for the router.
func (r *Runner) buildLab() error {
	hosts, err := labHosts(r.t)
	if err != nil {
		return err
	}
	lab, err := netns.Build(hosts, r.log)
	if err != nil {
		return fmt.Errorf("network namespaces: %w", err)
	}
	r.lab = lab
	// The delay line runs until the lab is removed, after every process
	// has stopped (not only until ctx ends: stopping crosses regions too).
	go func() {
		if err := r.wan.RunDelayLine(context.Background(), lab.Packets(), wan.Parties(r.t)); err != nil {
			r.log.Error("delay line stopped", "err", err)
		}
	}()
	routerHost := r.hostOf(routerName)
	parties := wan.Parties(r.t)
	for i := range r.t.Workloads {
		w := &r.t.Workloads[i]
		for j := range r.t.Regions {
			addr := router.RegionalAddress(r.t, w, &r.t.Regions[j])
			host, _, _ := net.SplitHostPort(addr)
			ip, _ := netip.ParseAddr(host)
			if h := parties[ip]; h != "" && h != routerHost {
				ln, err := lab.Listen(h, "tcp", addr)
				if err != nil {
					return fmt.Errorf("front door %s in %s: %w", addr, h, err)
				}
				f, err := ln.(*net.TCPListener).File()
				ln.Close()
				if err != nil {
					return err
				}
				r.doors = append(r.doors, handedDoor{addr: addr, file: f})
			}
		}
	}
	r.printf("network namespaces: %d hosts, one bridge per region, routed between regions (machine's address toward them %s)", len(hosts), netns.HostAddress)
	return nil
}

// handedDoor is a listener `up` opened in another host for the router.
type handedDoor struct {
	addr string
	file *os.File
}

// closeLab removes the namespaces (after every process has stopped).
func (r *Runner) closeLab() {
	for _, d := range r.doors {
		d.file.Close()
	}
	if r.lab != nil {
		r.lab.Close()
	}
}

// startIn starts a process in its host's namespace, with the isolation in
// its environment and, for the router, the front doors opened for it.
func (r *Runner) startIn(name string, cmd *exec.Cmd, onExit func(error)) (<-chan struct{}, error) {
	cmd.Env = append(os.Environ(), IsolationEnv+"="+string(lifeline.IsolationNetns))
	if name == routerName && len(r.doors) > 0 {
		var names []string
		for _, d := range r.doors {
			cmd.ExtraFiles = append(cmd.ExtraFiles, d.file)
			names = append(names, router.ActivationName(d.addr))
		}
		cmd.Env = append(cmd.Env, "LISTEN_FDS="+strconv.Itoa(len(r.doors)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	return r.lab.Start(r.hostOf(name), cmd, syscall.SIGTERM, onExit)
}

// applyCuts makes the namespaces drop what the link rules cut.
func (r *Runner) applyCuts() error {
	if r.lab == nil {
		return nil
	}
	return r.lab.SetCuts(wan.Drops(r.t, r.wan.Rules()))
}
