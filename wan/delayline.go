package wan

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Parties maps each address of a topology to the party that holds it: a
// node ("eu-west/a"), "witness", or "router" when the router has an
// address of its own (else the router is on the witness's host). Region
// entry addresses that are no node's belong to the router's host.
func Parties(t *lifeline.Topology) map[netip.Addr]string {
	m := map[netip.Addr]string{}
	add := func(a, party string) {
		if ip, err := netip.ParseAddr(a); err == nil && !ip.IsUnspecified() {
			if _, taken := m[ip]; !taken {
				m[ip] = party
			}
		}
	}
	for _, id := range t.Nodes() {
		add(t.Address(id), id.String())
	}
	if t.Witness != nil {
		add(t.Witness.Address, lifeline.WitnessSite)
	}
	add(t.Router.Address, RouterParty)
	router := RouterParty
	if ip, err := netip.ParseAddr(t.Router.Address); err == nil && m[ip] != "" {
		router = m[ip]
	}
	for _, r := range t.Regions {
		add(r.Entry, router)
	}
	return m
}

// Drops turns cut rules into what each party must drop in a namespace
// topology: for every two parties a rule separates, each drops the
// other's addresses. A rule with B set separates A's parties from B's; one
// without separates A's from every party outside A (a region's nodes still
// reach each other).
func Drops(t *lifeline.Topology, rules []Rule) map[string][]string {
	parties := Parties(t)
	addrs := map[string][]string{}
	for ip, p := range parties {
		addrs[p] = append(addrs[p], ip.String())
	}
	in := func(p, pat string) bool { return p == pat || regionOf(p) == pat }
	separates := func(r Rule, p, q string) bool {
		if r.B == "" {
			return in(p, r.A) != in(q, r.A)
		}
		return (in(p, r.A) && in(q, r.B)) || (in(p, r.B) && in(q, r.A))
	}
	out := map[string][]string{}
	for p := range addrs {
		for q, qa := range addrs {
			if p == q {
				continue
			}
			for _, r := range rules {
				if separates(r, p, q) {
					out[p] = append(out[p], qa...)
					break
				}
			}
		}
	}
	return out
}

// RouterParty names the router among the parties of a link rule.
const RouterParty = "router"

// packet is one IP packet held by the delay line.
type packet struct {
	data []byte
	due  time.Time
}

// RunDelayLine carries packets between the segments of a namespace lab:
// it reads each from dev (one IPv4 packet per read), holds it for the
// cross-region latency plus any extra delay between its sender and its
// receiver (SetLatency, SetDelay), and writes it back. Packets with the
// same delay keep their order; a queue that overflows drops, as a router
// would. It returns when dev is closed or ctx ends.
//
// This is how a namespace topology gets latency on a kernel without netem:
// in the kernel every packet between regions is routed through dev, so
// every protocol is delayed alike, and a refusal or a reset still looks
// like one.
func (e *Emulator) RunDelayLine(ctx context.Context, dev io.ReadWriter, parties map[netip.Addr]string) error {
	var mu sync.Mutex
	queues := map[time.Duration]chan packet{}
	var wg sync.WaitGroup
	defer func() {
		mu.Lock()
		for _, q := range queues {
			close(q)
		}
		mu.Unlock()
		wg.Wait()
	}()
	queue := func(d time.Duration) chan packet {
		mu.Lock()
		defer mu.Unlock()
		q, ok := queues[d]
		if !ok {
			q = make(chan packet, 4096)
			queues[d] = q
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range q {
					if wait := time.Until(p.due); wait > 0 {
						select {
						case <-time.After(wait):
						case <-ctx.Done():
							return
						}
					}
					_, _ = dev.Write(p.data)
				}
			}()
		}
		return q
	}
	c := &conn{}
	for {
		buf := make([]byte, 1<<16)
		n, err := dev.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, ctx.Err()) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n < 20 || buf[0]>>4 != 4 {
			continue // not IPv4
		}
		src, _ := netip.AddrFromSlice(buf[12:16])
		dst, _ := netip.AddrFromSlice(buf[16:20])
		c.from, c.to = parties[src], parties[dst]
		d := time.Duration(e.latency.Load()) + e.extra(c)
		if d <= 0 {
			_, _ = dev.Write(buf[:n])
			continue
		}
		select {
		case queue(d) <- packet{data: buf[:n], due: time.Now().Add(d)}:
		default: // full: dropped
		}
	}
}
