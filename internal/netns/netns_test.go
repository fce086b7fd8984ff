package netns_test

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/lifeline-dr/lifeline/internal/netns"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
)

// lab builds a lab of two segments on a fresh loopback subnet, passing
// packets between segments straight on; it is removed at cleanup.
func lab(t *testing.T) (*netns.Lab, string) {
	t.Helper()
	if err := netns.Check(); err != nil {
		t.Skipf("network namespaces cannot be used here: %v", err)
	}
	topotest.Exclusive(t)
	sub := testenv.Subnet(t)
	l, err := netns.Build([]netns.HostSpec{
		{Name: "r1/a", Segment: "r1", Addrs: []string{sub + ".11"}},
		{Name: "r1/b", Segment: "r1", Addrs: []string{sub + ".12"}},
		{Name: "r2/a", Segment: "r2", Addrs: []string{sub + ".21"}},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	uplink := l.Uplink()
	t.Cleanup(func() {
		l.Close()
		if _, err := netlink.LinkByName(uplink); err == nil {
			t.Errorf("the lab's uplink %s is still there after Close", uplink)
		}
	})
	go func() {
		p := l.Packets()
		buf := make([]byte, 1<<16)
		for {
			n, err := p.Read(buf)
			if err != nil {
				return
			}
			_, _ = p.Write(buf[:n])
		}
	}()
	return l, sub
}

// serve answers "hello from NAME" on every connection to addr in a host.
func serve(t *testing.T, l *netns.Lab, name, addr string) {
	t.Helper()
	ln, err := l.Listen(name, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello from "+name+" to "+c.RemoteAddr().(*net.TCPAddr).IP.String())
			c.Close()
		}
	}()
}

func ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestLab(t *testing.T) {
	l, sub := lab(t)
	for _, h := range []struct{ name, addr string }{{"r1/a", sub + ".11"}, {"r1/b", sub + ".12"}, {"r2/a", sub + ".21"}} {
		serve(t, l, h.name, h.addr+":7000")
	}

	t.Run("the machine reaches every host, from HostAddress", func(t *testing.T) {
		for _, a := range []string{".11", ".12", ".21"} {
			got, err := ask(sub + a + ":7000")
			if err != nil || !strings.HasSuffix(got, " to "+netns.HostAddress) {
				t.Errorf("%s: %q, %v", sub+a, got, err)
			}
		}
	})

	t.Run("hosts reach each other from their own addresses, across segments too", func(t *testing.T) {
		got := dialFrom(t, l, "r1/a", sub+".21:7000")
		if want := "hello from r2/a to " + sub + ".11"; got != want {
			t.Errorf("r1/a -> r2/a: %q, want %q", got, want)
		}
		got = dialFrom(t, l, "r2/a", sub+".12:7000")
		if want := "hello from r1/b to " + sub + ".21"; got != want {
			t.Errorf("r2/a -> r1/b: %q, want %q", got, want)
		}
	})

	t.Run("a cut drops packets, the machine still reaches both sides, heal", func(t *testing.T) {
		if err := l.SetCuts(map[string][]string{"r1/a": {sub + ".21"}, "r2/a": {sub + ".11"}}); err != nil {
			t.Fatal(err)
		}
		if got := dialFrom(t, l, "r1/a", sub+".21:7000"); got != "timeout" {
			t.Errorf("r1/a -> r2/a through a cut: %q, want a timeout", got)
		}
		if got := dialFrom(t, l, "r1/a", sub+".12:7000"); !strings.HasPrefix(got, "hello from r1/b") {
			t.Errorf("r1/a -> r1/b, not cut: %q", got)
		}
		for _, a := range []string{".11", ".21"} {
			if got, err := ask(sub + a + ":7000"); err != nil {
				t.Errorf("machine -> %s during the cut: %q, %v", a, got, err)
			}
		}
		if err := l.SetCuts(nil); err != nil {
			t.Fatal(err)
		}
		if got := dialFrom(t, l, "r1/a", sub+".21:7000"); !strings.HasPrefix(got, "hello from r2/a") {
			t.Errorf("r1/a -> r2/a after heal: %q", got)
		}
	})
}

// dialFrom connects from a host (a socket made in its namespace) and
// returns the answer, or "timeout".
func dialFrom(t *testing.T, l *netns.Lab, name, addr string) string {
	t.Helper()
	var got string
	err := l.Do(name, func() error {
		c, err := net.DialTimeout("tcp", addr, 700*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				got = "timeout"
				return nil
			}
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		b, err := io.ReadAll(c)
		got = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("%s -> %s: %v", name, addr, err)
	}
	return got
}
