package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/examples"
	"github.com/lifeline-dr/lifeline/spec"
)

// What `up` runs on: by default netns where it can be used and loopback
// with a notice otherwise; what a data directory was built with, always.
func TestChooseIsolation(t *testing.T) {
	b, err := examples.Read(examples.Default)
	if err != nil {
		t.Fatal(err)
	}
	top, err := spec.Parse(examples.Default, b)
	if err != nil {
		t.Fatal(err)
	}
	usable := netnsUnusable(top) == nil
	here := lifeline.IsolationLoopback
	if usable {
		here = lifeline.IsolationNetns
	}
	dir := func(recorded string, nodes bool) string {
		d := t.TempDir()
		if recorded != "" {
			if err := os.WriteFile(filepath.Join(d, isolationFile), []byte(recorded+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if nodes {
			if err := os.MkdirAll(filepath.Join(d, "nodes", "eu-west"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	for _, c := range []struct {
		name, asked, recorded string
		nodes                 bool
		want                  lifeline.Isolation
		err                   string
	}{
		{name: "default on a new data dir", want: here},
		{name: "auto on a new data dir", asked: "auto", want: here},
		{name: "default keeps a recorded netns", recorded: "netns", want: lifeline.IsolationNetns},
		{name: "default keeps a recorded loopback", recorded: "loopback", want: lifeline.IsolationLoopback},
		{name: "default keeps loopback for a data dir older than namespaces", nodes: true, want: lifeline.IsolationLoopback},
		{name: "loopback asked", asked: "loopback", want: lifeline.IsolationLoopback},
		{name: "loopback asked on a netns data dir", asked: "loopback", recorded: "netns", err: "was built with --isolation netns"},
		{name: "netns asked on a loopback data dir", asked: "netns", recorded: "loopback", err: "was built with --isolation loopback"},
		{name: "unknown", asked: "vm", err: `--isolation "vm": want auto, netns or loopback`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, notice, err := chooseIsolation(c.asked, top, dir(c.recorded, c.nodes))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("isolation %s, want %s", got, c.want)
			}
			if fresh := c.recorded == "" && !c.nodes && c.asked != "loopback"; fresh && !usable && !strings.Contains(notice, "running on loopback addresses") {
				t.Errorf("no notice on loopback by default: %q", notice)
			} else if !fresh && notice != "" {
				t.Errorf("notice %q", notice)
			}
		})
	}
}
