// Package netns builds a lab of hosts on one Linux machine: every host is a
// network namespace with its own addresses, the hosts of one segment (a
// region) share a bridge, and a core namespace routes between the
// segments. Partitions drop packets in the hosts' own input chains
// (nftables), so every protocol is cut alike; packets between segments
// pass through a TUN device whose reader (the caller's delay line) decides
// when each one goes on, which is how a kernel without netem gets latency.
//
// The lab keeps the addresses it is given, loopback ones included (each
// host treats only 127.0.0.1 as its own loopback; route_localnet lets the
// rest of 127.0.0.0/8 travel between namespaces), and reaches them from the
// machine itself through one veth pair and host routes in the machine's
// local table, with HostAddress as their source.
//
// Namespaces are not named (nothing under /run/netns): the lab holds them
// by file descriptor, and so do the processes it starts in them. When the
// lab's process dies, and with it (by their parent-death signal) every
// process it started, the kernel removes the namespaces, their links and
// the host routes through them. Close removes them at once.
//
// It uses github.com/vishvananda/netlink and netns (links, addresses,
// routes, rules) and github.com/google/nftables (the cut rules), all over
// netlink: no ip or nft command is needed.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// HostAddress is the machine's own address toward a lab: connections from
// the machine into the lab (the operator's CLI, psql, tests) come from it.
// GatewayAddress is the core's address on every bridge.
const (
	HostAddress    = "127.255.255.1"
	GatewayAddress = "127.255.255.254"
	// reserved is the /24 both are taken from: a lab's hosts may not use it.
	reserved = "127.255.255.0/24"
)

// DelayDevice is the TUN device of the core through which packets between
// segments pass.
const DelayDevice = "delay0"

// mtu of every link: large packets mean fewer trips through the delay line.
const mtu = 65000

// delayTable is the core's routing table that sends packets from a
// bridge to the delay device.
const delayTable = 100

// HostSpec is one host of a lab.
type HostSpec struct {
	// Name identifies the host ("eu-west/a", "witness").
	Name string
	// Segment is the bridge it is on (its region).
	Segment string
	// Addrs are its IPv4 addresses; the first is the source of what it sends.
	Addrs []string
}

// Lab is a running set of namespaces.
type Lab struct {
	log    *slog.Logger
	core   netns.NsHandle
	hosts  map[string]*host
	order  []string
	uplink string // the machine's end of the veth into the core
	tun    *os.File

	mu   sync.Mutex
	nft  map[string]*nftables.Conn
	cuts map[string][]string
}

type host struct {
	spec HostSpec
	ns   netns.NsHandle
}

// Check reports why a lab cannot be built here, or nil: it needs root (or
// CAP_NET_ADMIN and CAP_SYS_ADMIN) and a kernel that lets this process make
// network namespaces (a container may not).
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no /dev/net/tun: %w", err)
	}
	return do(func() error {
		ns, err := netns.New()
		if err != nil {
			return fmt.Errorf("create a network namespace: %w", err)
		}
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			return err
		}
		defer h.Close()
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "llcheck0"}, PeerName: "llcheck1"}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("create a veth pair: %w", err)
		}
		c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "lifeline"})
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		return nil
	})
}

// do runs f on a thread of its own and restores the thread's namespace
// afterwards; a thread that cannot be restored is discarded.
func do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the goroutine ends locked and its thread with it
		errc <- err
	}()
	return <-errc
}

// in runs f in namespace ns.
func in(ns netns.NsHandle, f func() error) error {
	return do(func() error {
		if err := netns.Set(ns); err != nil {
			return err
		}
		return f()
	})
}

// Build makes the namespaces, bridges, links, routes and the delay device
// of the hosts. On error it removes what it made.
func Build(hosts []HostSpec, log *slog.Logger) (_ *Lab, err error) {
	if err := validate(hosts); err != nil {
		return nil, err
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	l := &Lab{log: log, hosts: map[string]*host{}, uplink: "ll" + hex.EncodeToString(suffix), nft: map[string]*nftables.Conn{}, cuts: map[string][]string{}}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if err := do(func() error {
		ns, err := netns.New()
		l.core = ns
		return err
	}); err != nil {
		return nil, fmt.Errorf("core namespace: %w", err)
	}
	core, err := netlink.NewHandleAt(l.core)
	if err != nil {
		return nil, err
	}
	defer core.Close()
	if err := in(l.core, func() error {
		return sysctls(map[string]string{
			"net/ipv4/ip_forward":                  "1",
			"net/ipv4/conf/all/route_localnet":     "1",
			"net/ipv4/conf/default/route_localnet": "1",
			"net/ipv4/conf/all/rp_filter":          "0",
			"net/ipv4/conf/default/rp_filter":      "0",
			"net/ipv4/conf/default/proxy_arp":      "1",
		})
	}); err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	if err := loopback(core); err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	gw := addr32(GatewayAddress)

	// One bridge per segment, with the gateway's address on each.
	bridges := map[string]netlink.Link{}
	var segments []string
	for _, h := range hosts {
		if _, ok := bridges[h.Segment]; ok {
			continue
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("br%d", len(bridges)), MTU: mtu}}
		if err := core.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("bridge of %s: %w", h.Segment, err)
		}
		if err := up(core, br, gw); err != nil {
			return nil, fmt.Errorf("bridge of %s: %w", h.Segment, err)
		}
		if err := noProxyDelay(l.core, br.Attrs().Name); err != nil {
			return nil, err
		}
		bridges[h.Segment] = br
		segments = append(segments, h.Segment)
	}

	// The delay device: packets from a bridge to an address of another
	// segment go to it (rule iif brN → table delayTable); what the delay
	// line writes back comes in through it and is routed as usual.
	if err := in(l.core, func() error {
		f, err := openTUN(DelayDevice)
		l.tun = f
		return err
	}); err != nil {
		return nil, fmt.Errorf("delay device: %w", err)
	}
	tun, err := core.LinkByName(DelayDevice)
	if err != nil {
		return nil, err
	}
	if err := core.LinkSetMTU(tun, mtu); err != nil {
		return nil, err
	}
	if err := up(core, tun, nil); err != nil {
		return nil, err
	}
	for _, s := range segments {
		rule := netlink.NewRule()
		rule.IifName = bridges[s].Attrs().Name
		rule.Table = delayTable
		rule.Priority = 100
		if err := core.RuleAdd(rule); err != nil {
			return nil, fmt.Errorf("delay rule: %w", err)
		}
	}

	// Every host: a namespace, a veth from its segment's bridge, its
	// addresses, and routes to the rest of 127.0.0.0/8 through the bridge.
	for i, spec := range hosts {
		h := &host{spec: spec}
		if err := do(func() error {
			ns, err := netns.New()
			h.ns = ns
			return err
		}); err != nil {
			return nil, fmt.Errorf("namespace of %s: %w", spec.Name, err)
		}
		l.hosts[spec.Name] = h
		l.order = append(l.order, spec.Name)
		if err := l.plug(core, h, fmt.Sprintf("v%d", i), bridges[spec.Segment], tun); err != nil {
			return nil, fmt.Errorf("host %s: %w", spec.Name, err)
		}
	}

	// The machine's way in: a veth into the core, and a route in the
	// machine's local table for every address of the lab (ahead of the
	// loopback /8, by being longer).
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.uplink, MTU: mtu}, PeerName: "up0", PeerNamespace: netlink.NsFd(l.core)}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	if err := sysctls(map[string]string{
		"net/ipv4/conf/" + l.uplink + "/route_localnet": "1",
		"net/ipv4/conf/" + l.uplink + "/rp_filter":      "0",
	}); err != nil {
		return nil, err
	}
	hostLink, err := netlink.LinkByName(l.uplink)
	if err != nil {
		return nil, err
	}
	if err := up(nil, hostLink, addr32(HostAddress)); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	coreUp, err := core.LinkByName("up0")
	if err != nil {
		return nil, err
	}
	if err := up(core, coreUp, gw); err != nil {
		return nil, err
	}
	if err := noProxyDelay(l.core, "up0"); err != nil {
		return nil, err
	}
	if err := core.RouteAdd(&netlink.Route{LinkIndex: coreUp.Attrs().Index, Dst: addr32(HostAddress), Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, fmt.Errorf("core route to the machine: %w", err)
	}
	for _, name := range l.order {
		for _, a := range l.hosts[name].spec.Addrs {
			r := &netlink.Route{LinkIndex: hostLink.Attrs().Index, Dst: addr32(a), Src: net.ParseIP(HostAddress), Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_LINK}
			if err := netlink.RouteAdd(r); err != nil {
				return nil, fmt.Errorf("route to %s: %w", a, err)
			}
		}
	}
	log.Info("lab built", "hosts", len(hosts), "segments", len(segments), "uplink", l.uplink)
	return l, nil
}

// plug connects a host's namespace to its bridge.
func (l *Lab) plug(core *netlink.Handle, h *host, name string, br, tun netlink.Link) error {
	hn, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		return err
	}
	defer hn.Close()
	if err := in(h.ns, func() error {
		return sysctls(map[string]string{
			"net/ipv4/conf/all/route_localnet":     "1",
			"net/ipv4/conf/default/route_localnet": "1",
			"net/ipv4/conf/all/rp_filter":          "0",
			"net/ipv4/conf/default/rp_filter":      "0",
		})
	}); err != nil {
		return err
	}
	if err := loopback(hn); err != nil {
		return err
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, MasterIndex: br.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(h.ns)}
	if err := core.LinkAdd(v); err != nil {
		return err
	}
	outer, err := core.LinkByName(name)
	if err != nil {
		return err
	}
	if err := core.LinkSetUp(outer); err != nil {
		return err
	}
	eth, err := hn.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := up(hn, eth, nil); err != nil {
		return err
	}
	for _, a := range h.spec.Addrs {
		if err := hn.AddrAdd(eth, &netlink.Addr{IPNet: addr32(a), Scope: int(netlink.SCOPE_UNIVERSE)}); err != nil {
			return fmt.Errorf("address %s: %w", a, err)
		}
		// The core reaches the host on its bridge; from other bridges,
		// through the delay device.
		if err := core.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Dst: addr32(a), Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("core route to %s: %w", a, err)
		}
		if err := core.RouteAdd(&netlink.Route{LinkIndex: tun.Attrs().Index, Dst: addr32(a), Scope: netlink.SCOPE_LINK, Table: delayTable}); err != nil {
			return fmt.Errorf("delay route to %s: %w", a, err)
		}
	}
	// Every other loopback address is on the link: the bridge's hosts
	// answer for themselves, the core (proxy ARP) for the others.
	_, lo8, _ := net.ParseCIDR("127.0.0.0/8")
	if err := hn.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: lo8, Src: net.ParseIP(h.spec.Addrs[0]), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	return nil
}

// noProxyDelay makes the core answer ARP for other segments at once (it
// waits 0.8 s by default: every first connection would).
func noProxyDelay(core netns.NsHandle, dev string) error {
	return in(core, func() error {
		return sysctls(map[string]string{"net/ipv4/neigh/" + dev + "/proxy_delay": "0"})
	})
}

// loopback brings lo up with 127.0.0.1 alone (not the /8), so that the
// other loopback addresses can be other hosts'.
func loopback(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return err
	}
	addrs, err := h.AddrList(lo, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := h.AddrDel(lo, &a); err != nil {
			return err
		}
	}
	return h.AddrAdd(lo, &netlink.Addr{IPNet: addr32("127.0.0.1")})
}

func up(h *netlink.Handle, link netlink.Link, addr *net.IPNet) error {
	if h == nil {
		h = &netlink.Handle{}
	}
	if addr != nil {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: addr, Scope: int(netlink.SCOPE_UNIVERSE)}); err != nil {
			return err
		}
	}
	return h.LinkSetUp(link)
}

func addr32(a string) *net.IPNet {
	return &net.IPNet{IP: net.ParseIP(a).To4(), Mask: net.CIDRMask(32, 32)}
}

func sysctls(kv map[string]string) error {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(kv[k]), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(k, "/", "."), err)
		}
	}
	return nil
}

// openTUN creates a TUN device (IPv4 packets, no header) in the calling
// thread's namespace; the file is non-blocking, so reads use the poller.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

func validate(hosts []HostSpec) error {
	_, res, _ := net.ParseCIDR(reserved)
	seen := map[string]string{}
	for _, h := range hosts {
		if len(h.Addrs) == 0 {
			return fmt.Errorf("host %s has no address", h.Name)
		}
		for _, a := range h.Addrs {
			ip := net.ParseIP(a).To4()
			switch {
			case ip == nil:
				return fmt.Errorf("host %s: %q is not an IPv4 address", h.Name, a)
			case ip.Equal(net.IPv4(127, 0, 0, 1)):
				return fmt.Errorf("host %s: 127.0.0.1 is every namespace's own loopback address", h.Name)
			case res.Contains(ip):
				return fmt.Errorf("host %s: %s is in %s, which the lab keeps for itself", h.Name, a, reserved)
			}
			if other, ok := seen[a]; ok {
				return fmt.Errorf("hosts %s and %s share the address %s", other, h.Name, a)
			}
			seen[a] = h.Name
		}
	}
	return nil
}

// Hosts lists the hosts' names in the order they were built.
func (l *Lab) Hosts() []string { return append([]string(nil), l.order...) }

// Packets is the delay device: each Read returns one IPv4 packet going
// from one segment to another, and each Write sends one on.
func (l *Lab) Packets() *os.File { return l.tun }

// Uplink is the machine's end of the link into the lab.
func (l *Lab) Uplink() string { return l.uplink }

func (l *Lab) host(name string) (*host, error) {
	h, ok := l.hosts[name]
	if !ok {
		return nil, fmt.Errorf("no host %q in the lab", name)
	}
	return h, nil
}

// Listen opens a listener in a host's namespace (for a process of the
// machine to serve there, or to hand to a process as a file).
func (l *Lab) Listen(name, network, addr string) (net.Listener, error) {
	h, err := l.host(name)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	err = in(h.ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Start starts cmd in a host's namespace, as proc.Start does: it gets sig
// when this process dies, and the returned channel is closed once it has
// exited. The thread that forked it stays locked (Linux sends the
// parent-death signal when that thread exits) and is discarded after.
func (l *Lab) Start(name string, cmd *exec.Cmd, sig syscall.Signal, onExit func(error)) (<-chan struct{}, error) {
	h, err := l.host(name)
	if err != nil {
		return nil, err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := netns.Set(h.ns); err != nil {
			started <- fmt.Errorf("enter %s: %w", name, err)
			return
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		if onExit != nil {
			onExit(err)
		}
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}

// cutTable is the nftables table of the cuts in every host.
const cutTable = "lifeline"

// SetCuts replaces the cuts: each host named in drops discards every
// packet that arrives from the listed addresses (in its input chain, so
// the sender sees nothing: no refusal, no error, as in a partition); every
// other host discards nothing.
func (l *Lab) SetCuts(drops map[string][]string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, name := range l.order {
		want := append([]string(nil), drops[name]...)
		sort.Strings(want)
		if strings.Join(want, ",") == strings.Join(l.cuts[name], ",") {
			continue
		}
		if err := l.setCut(name, want); err != nil {
			errs = append(errs, fmt.Errorf("cut at %s: %w", name, err))
			continue
		}
		l.cuts[name] = want
	}
	return errors.Join(errs...)
}

func (l *Lab) setCut(name string, addrs []string) error {
	h := l.hosts[name]
	c, ok := l.nft[name]
	if !ok {
		var err error
		if c, err = nftables.New(nftables.WithNetNSFd(int(h.ns))); err != nil {
			return err
		}
		l.nft[name] = c
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: cutTable}
	// Replace the table whole: a delete of one that is absent fails the
	// batch, so one is added (a no-op when present) before.
	c.AddTable(table)
	c.DelTable(table)
	if len(addrs) > 0 {
		c.AddTable(table)
		set := &nftables.Set{Table: table, Name: "cut", KeyType: nftables.TypeIPAddr}
		var elems []nftables.SetElement
		for _, a := range addrs {
			elems = append(elems, nftables.SetElement{Key: net.ParseIP(a).To4()})
		}
		if err := c.AddSet(set, elems); err != nil {
			return err
		}
		chain := c.AddChain(&nftables.Chain{
			Name: "input", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter,
		})
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
			// ip saddr @cut drop
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	return c.Flush()
}

// Cuts lists what each host drops now.
func (l *Lab) Cuts() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]string{}
	for k, v := range l.cuts {
		if len(v) > 0 {
			out[k] = append([]string(nil), v...)
		}
	}
	return out
}

// Close removes the lab: the machine's link into it (and with it every
// host route), the delay device and the namespaces (once no process is
// left in them; the caller stops those first).
func (l *Lab) Close() {
	if l.uplink != "" {
		if link, err := netlink.LinkByName(l.uplink); err == nil {
			if err := netlink.LinkDel(link); err != nil {
				l.log.Warn("remove the lab's uplink", "link", l.uplink, "err", err)
			}
		}
	}
	if l.tun != nil {
		l.tun.Close()
	}
	for _, c := range l.nft {
		_ = c.CloseLasting()
	}
	for _, h := range l.hosts {
		h.ns.Close()
	}
	if l.core.IsOpen() {
		l.core.Close()
	}
}

// Do runs f on a thread inside a host's namespace (sockets f makes live
// there).
func (l *Lab) Do(name string, f func() error) error {
	h, err := l.host(name)
	if err != nil {
		return err
	}
	return in(h.ns, f)
}
