package objstore

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spool holds an encoded payload between encoding and upload: in memory up
// to limit bytes, then in a temporary file. It is what lets the header carry
// the plaintext size and SHA-256 (known only at the end of the input) while
// memory stays bounded, and what lets an upload start only once the input
// has been read without error.
type spool struct {
	dir   string
	limit int
	mem   []byte
	f     *os.File
	n     int64
}

var _ io.Writer = (*spool)(nil)

func newSpool(dir string, limit int) *spool { return &spool{dir: dir, limit: limit} }

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && len(s.mem)+len(p) > s.limit {
		f, err := os.CreateTemp(s.dir, "lifeline-objstore-*.spool")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		// Unlink at once where the OS allows it, so that a crash leaves no
		// plaintext-sized garbage behind; close removes it otherwise.
		_ = os.Remove(f.Name())
		s.f = f
		if _, err := f.Write(s.mem); err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.mem = nil
	}
	if s.f != nil {
		n, err := s.f.Write(p)
		s.n += int64(n)
		if err != nil {
			return n, fmt.Errorf("spool: %w", err)
		}
		return n, nil
	}
	if len(s.mem)+len(p) > cap(s.mem) {
		// Grow by doubling, but never past the limit.
		grown := make([]byte, len(s.mem), min(s.limit, max(2*cap(s.mem), len(s.mem)+len(p), 64<<10)))
		copy(grown, s.mem)
		s.mem = grown
	}
	s.mem = append(s.mem, p...)
	s.n += int64(len(p))
	return len(p), nil
}

// size is the number of bytes written so far.
func (s *spool) size() int64 { return s.n }

// reader returns the spooled bytes from the start.
func (s *spool) reader() (io.Reader, error) {
	if s.f == nil {
		return bytes.NewReader(s.mem), nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return io.LimitReader(s.f, s.n), nil
}

func (s *spool) close() {
	s.mem = nil
	if s.f != nil {
		_ = s.f.Close()
		_ = os.Remove(s.f.Name())
		s.f = nil
	}
}
