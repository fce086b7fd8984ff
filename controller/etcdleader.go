package controller

import (
	"context"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// placeEtcdLeader keeps the etcd leader away from the member embedded in a
// primary's node. Losing that node then costs one lease TTL, not a TTL plus
// an etcd election (etcd extends every lease when its leader changes).
func (c *Controller) placeEtcdLeader(ctx context.Context) {
	if !c.t.Control.Embedded() {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cli := c.s.Client()
	members, err := cli.MemberList(qctx)
	if err != nil {
		return
	}
	busy := map[string]bool{} // site names hosting a primary
	for i := range c.t.Workloads {
		st, _, found, err := c.s.State(qctx, c.t.Workloads[i].Name)
		if err != nil || !found {
			continue
		}
		if id, ok := st.PrimaryNode(); ok {
			if site, ok := c.t.SiteOf(id); ok {
				busy[site.Name] = true
			}
		}
	}
	var leaderURL string
	var leaderName string
	var target uint64
	for _, m := range members.Members {
		if len(m.ClientURLs) == 0 {
			continue
		}
		st, err := cli.Status(qctx, c.cfg.DialURL(m.ClientURLs[0]))
		if err != nil {
			continue
		}
		if st.Leader == m.ID {
			leaderURL, leaderName = m.ClientURLs[0], m.Name
		}
	}
	if leaderURL == "" || !busy[leaderName] {
		return
	}
	for _, m := range members.Members {
		if m.Name == lifeline.WitnessSite && !busy[m.Name] {
			target = m.ID
		}
	}
	for _, m := range members.Members {
		if target == 0 && !busy[m.Name] && m.Name != leaderName {
			target = m.ID
		}
	}
	if target == 0 {
		return
	}
	lc, err := c.s.ClientTo(c.cfg.DialURL(leaderURL))
	if err != nil {
		return
	}
	defer lc.Close()
	if _, err := lc.MoveLeader(qctx, target); err != nil {
		c.log.Warn("move etcd leader off the primary's node", "from", leaderName, "err", err)
		return
	}
	c.log.Info("moved the etcd leader off the primary's node", "from", leaderName)
}
