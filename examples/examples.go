// Package examples holds one working spec per strategy. The warm-standby
// spec is also the embedded default that `lifeline up` runs when no spec is given.
package examples

import (
	"embed"
)

//go:embed *.yaml
var files embed.FS

// Default is the name of the embedded default spec.
const Default = "warm-standby.yaml"

// Read returns an example spec by file name.
func Read(name string) ([]byte, error) { return files.ReadFile(name) }
