package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// PeerScript returns the path of a peer baseline script from the project's
// shared folder (../shared/peers next to the checkout), or "" when absent.
// LIFELINE_PEERS overrides the folder.
func PeerScript(name string) string {
	dir := os.Getenv("LIFELINE_PEERS")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "shared", "peers")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// RunPeer runs a peer script with env and returns its output; results go to
// resDir. Peer scripts stop every process they start.
func RunPeer(ctx context.Context, script, resDir string, timeout time.Duration, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.Env = append(append(os.Environ(), "RES_DIR="+resDir), env...)
	return cmd.CombinedOutput()
}

// Percentile returns the p-th percentile (nearest rank) of sorted values.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	k := int(p/100*float64(len(sorted))+0.5) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(sorted) {
		k = len(sorted) - 1
	}
	return sorted[k]
}
