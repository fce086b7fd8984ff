package wan_test

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/wan"
)

// TestEmulator_Delay: an extra latency between two parties adds to every
// chunk of their routes each way, at once on open connections; 0 removes it.
func TestEmulator_Delay(t *testing.T) {
	sub := testenv.Subnet(t)
	top := topology(t, sub)
	echo(t, sub+".21:5432")
	e := wan.New(top, slog.New(slog.DiscardHandler))
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := net.Dial("tcp", wan.NewDialer(top, "west/a").Address(sub+".21:5432"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)

	rule := wan.Rule{A: "east", B: "west"}
	e.SetDelay(rule, 100*time.Millisecond)
	if got := e.Delays(); len(got) != 1 || got[0].Extra != 100*time.Millisecond {
		t.Fatalf("delays = %+v", got)
	}
	rtt, err := roundTrip(c, r, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// 30ms of cross-region latency and 100ms extra, each way.
	if rtt < 260*time.Millisecond {
		t.Errorf("round trip %v with +100ms each way on top of 30ms", rtt)
	}
	e.SetDelay(rule, 0)
	if got := e.Delays(); len(got) != 0 {
		t.Errorf("delays after removing = %+v", got)
	}
	if _, err := roundTrip(c, r, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("round trip with +100ms each way: %v", rtt)
}
