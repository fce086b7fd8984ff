package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/lifeline-dr/lifeline/telemetry"
)

// Event is the data of each server-sent event: the cluster as of one
// snapshot, and the agent that answered.
type Event struct {
	telemetry.Snapshot
	Node     string        `json:"node"`
	API      []string      `json:"api"`
	Topology *TopologyView `json:"topology"`
	// Gamedays is the game-day history (newest first); GamedaysNote says
	// why there is none.
	Gamedays     []json.RawMessage `json:"gamedays"`
	GamedaysNote string            `json:"gamedays_note,omitempty"`
}

// TopologyView is the shape of the topology the dashboard draws.
type TopologyView struct {
	Regions []RegionView `json:"regions"`
	Witness string       `json:"witness,omitempty"`
	Router  string       `json:"router"`
}

// RegionView is one region and its zones.
type RegionView struct {
	Name  string     `json:"name"`
	Entry string     `json:"entry"`
	Zones []ZoneView `json:"zones"`
}

// ZoneView is one zone's node.
type ZoneView struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

func (s *Server) topologyView() *TopologyView {
	t := s.cfg.T
	v := &TopologyView{Router: t.Router.Address}
	if t.Witness != nil {
		v.Witness = t.Witness.Address
	}
	for _, r := range t.Regions {
		rv := RegionView{Name: r.Name, Entry: r.Entry}
		for _, z := range r.Zones {
			rv.Zones = append(rv.Zones, ZoneView{Name: z.Name, Address: z.Address})
		}
		v.Regions = append(v.Regions, rv)
	}
	return v
}

// event is the cluster as the dashboard gets it.
func (s *Server) event(snap telemetry.Snapshot) Event {
	e := Event{Snapshot: snap, Node: s.cfg.Node, API: APIEndpoints(s.cfg.T), Topology: s.topologyView()}
	entries, err := s.gamedayEntries()
	if err != nil {
		e.GamedaysNote = err.Error()
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e.Gamedays = append(e.Gamedays, entries[i])
	}
	return e
}

// heartbeat keeps an idle event stream open through proxies.
const heartbeat = 15 * time.Second

func (s *Server) events(w http.ResponseWriter, r *http.Request, _ Identity) error {
	if s.cfg.Sampler == nil {
		return errorf(http.StatusNotFound, "not_found", "no events on this server")
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	changed, stop := s.cfg.Sampler.Subscribe()
	defer stop()
	var last []byte
	send := func() error {
		snap, ok := s.cfg.Sampler.Snapshot()
		if !ok {
			return nil
		}
		b, err := json.Marshal(s.event(snap))
		if err != nil {
			return err
		}
		// Only changes are sent (the snapshot's time alone is no change).
		key := withoutAt(b)
		if bytes.Equal(key, last) {
			return nil
		}
		last = key
		if _, err := w.Write([]byte("event: snapshot\ndata: ")); err != nil {
			return err
		}
		w.Write(b)
		w.Write([]byte("\n\n"))
		return rc.Flush()
	}
	if err := send(); err != nil {
		return nil
	}
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-changed:
			if err := send(); err != nil {
				return nil
			}
		case <-beat.C:
			// A game day that ended changes the history, not the snapshot.
			if err := send(); err != nil {
				return nil
			}
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return nil
			}
			if rc.Flush() != nil {
				return nil
			}
		}
	}
}

// withoutAt is a snapshot's JSON without its leading "at" field, to tell
// a change from a refresh.
func withoutAt(b []byte) []byte {
	if i := bytes.IndexByte(b, ','); i > 0 && bytes.HasPrefix(b, []byte(`{"at":`)) {
		return append([]byte(nil), b[i:]...)
	}
	return append([]byte(nil), b...)
}
