package e2e_test

import (
	"path/filepath"
	"testing"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
)

// The stories that need the warm-standby example each start a topology of
// their own. Sharing one (with settle between them) was tried: a story's
// leftovers (a primary moved by the router story, a switchover back that
// failed) cascaded into every story after it.
//
// The router and zone-failure stories run where partitions are real —
// network namespaces, as `up` runs by default as root — and on loopback
// where namespaces cannot be used; the other stories run on loopback.
func TestRouter(t *testing.T)          { router(t, warmStandbyPreferNetns(t)) }
func TestZoneFailure(t *testing.T)     { zoneFailure(t, warmStandbyPreferNetns(t)) }
func TestGameday(t *testing.T)         { gamedays(t, warmStandby(t)) }
func TestOperatorSurface(t *testing.T) { operatorSurface(t, warmStandby(t)) }
func TestRegionFailure(t *testing.T)   { regionFailure(t, warmStandby(t)) }

func warmStandby(t *testing.T) *topotest.Up {
	return topotest.Start(t, topotest.Example(t, "warm-standby"), filepath.Join(testenv.Dir(t), "data"))
}

func warmStandbyPreferNetns(t *testing.T) *topotest.Up {
	return topotest.StartPreferNetns(t, topotest.Example(t, "warm-standby"), filepath.Join(testenv.Dir(t), "data"))
}
