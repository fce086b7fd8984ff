// Package install puts a copy of this executable where PostgreSQL's
// unprivileged OS user can run it.
package install

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Binary copies this executable to <data dir>/bin/lifeline, where
// PostgreSQL's archive_command and restore_command run it as the
// unprivileged OS user: `go run` and test builds live in directories that
// user cannot enter. The copy is replaced only when it differs in size or
// age, through a rename, so a running archive_command never sees half a file.
func Binary(dataDir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	src, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(dataDir, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "lifeline")
	if have, err := os.Stat(dst); err == nil && have.Size() == st.Size() && !have.ModTime().Before(st.ModTime()) {
		return dst, nil
	}
	tmp, err := os.CreateTemp(dir, ".lifeline-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install %s: %w", dst, err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install %s: %w", dst, err)
	}
	return dst, nil
}
