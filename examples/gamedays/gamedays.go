// Package gamedays holds the example game-day scenarios (`lifeline
// gameday run examples/gamedays/zone-loss.yaml`). Their specs are the
// strategy examples one folder up; `lifeline demo` runs region-loss.yaml
// from the embedded copies.
package gamedays

import "embed"

//go:embed *.yaml
var files embed.FS

// Read returns a scenario by file name.
func Read(name string) ([]byte, error) { return files.ReadFile(name) }

// Names lists the scenarios.
func Names() ([]string, error) {
	entries, err := files.ReadDir(".")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}
