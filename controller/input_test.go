package controller_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/store"
)

// TestController_UndecodableRecord: a record in etcd that does not decode
// is an error for the controller, never a missing record (which would read
// as "not bootstrapped" for the primary, or as a lost lease).
func TestController_UndecodableRecord(t *testing.T) {
	top, w := setup(t)
	s, err := store.Connect(testenv.Etcd(t), top.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := controller.New(controller.Config{Topology: top, Store: s, Name: "west/a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys := s.Keys()
	for _, key := range []string{keys.State(w.Name), keys.Lease(w.Name), keys.Status(w.Name, "west/b"), keys.Health("db/west/a/postgres", "east")} {
		t.Run(key, func(t *testing.T) {
			if _, err := s.Client().Put(ctx, key, "{not json"); err != nil {
				t.Fatal(err)
			}
			defer s.Client().Delete(ctx, key)
			if in, err := c.ReadInput(ctx, w); err == nil {
				t.Errorf("read %s undecodable: no error, decision %+v", key, controller.Decide(in))
			}
		})
	}
}
