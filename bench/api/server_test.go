package apibench

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/status"
	"github.com/lifeline-dr/lifeline/telemetry"
)

// BenchmarkStatusServer is BenchmarkAPI's status figure for the API server
// alone (a status of five nodes, no topology running): what the server
// costs, apart from what the machine's other processes take from it.
func BenchmarkStatusServer(b *testing.B) {
	t := &lifeline.Topology{Name: "shop", API: lifeline.API{Port: 8443}, Workloads: []lifeline.Workload{{Name: "orders"}}}
	var nodes []status.Node
	for _, n := range []string{"eu-west/a", "eu-west/b", "eu-west/c", "eu-central/a", "eu-central/b"} {
		id, _ := lifeline.ParseNodeID(n)
		nodes = append(nodes, status.Node{Region: id.Region, Zone: id.Zone, Role: "standby", Healthy: true, Address: "127.0.1.1", Port: 5432, LSN: "0/3000000", Reported: time.Now().Format(time.RFC3339)})
	}
	snap := telemetry.Snapshot{At: time.Now(), Status: &status.Report{Name: "shop", Controller: "eu-west/b",
		Workloads: []status.Workload{{Name: "orders", Strategy: "warm-standby", Active: "eu-west", Primary: "eu-west/a", Epoch: 1, Phase: lifeline.PhaseSteady, Nodes: nodes}}}}
	srv := api.New(api.Config{T: t, Node: "eu-west/a", Sampler: telemetry.Fixed{Snap: snap}, Tokens: api.StaticTokens{"llt_v": {Name: "v", Role: "viewer"}}})
	ts := httptest.NewTLSServer(srv)
	defer ts.Close()
	tlsConfig := ts.Client().Transport.(*http.Transport).TLSClientConfig
	for i := 0; i < b.N; i++ {
		for _, clients := range []int{1, 64} {
			statusLoad(b, ts.URL, "llt_v", tlsConfig, clients, 6400)
		}
	}
}
