package objstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/lifeline-dr/lifeline/objstore"
)

// streamReader produces n pseudo-random bytes without holding them.
type streamReader struct {
	r *rand.ChaCha8
	n int64
}

func (s *streamReader) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.n {
		p = p[:s.n]
	}
	s.r.Read(p)
	s.n -= int64(len(p))
	return len(p), nil
}

// TestStore_BoundedMemory puts and gets an object far larger than what the
// package may allocate, and checks the bytes allocated meanwhile: holding the
// object in memory would allocate at least its size.
func TestStore_BoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 256 MiB")
	}
	const size = 256 << 20
	const budget = 64 << 20
	ctx := context.Background()
	s := open(t, "file://"+t.TempDir(), objstore.Options{Key: keyA})

	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var info objstore.Info
	putAlloc := allocated(func() {
		var err error
		info, err = s.Put(ctx, "base/big", &streamReader{rand.NewChaCha8([32]byte{1}), size})
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
	})
	sum := sha256.New()
	getAlloc := allocated(func() {
		r, err := s.Get(ctx, "base/big")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		defer r.Close()
		if _, err := io.Copy(sum, r); err != nil {
			t.Fatalf("read: %v", err)
		}
	})
	if got := hex.EncodeToString(sum.Sum(nil)); got != info.SHA256 || info.Size != size {
		t.Fatalf("read back sha %s, want %s (%d bytes)", got, info.SHA256, info.Size)
	}
	t.Logf("allocated for %d MiB: Put %d MiB, Get %d MiB", size>>20, putAlloc>>20, getAlloc>>20)
	if putAlloc > budget || getAlloc > budget {
		t.Errorf("allocated Put %d MiB, Get %d MiB for a %d MiB object; want under %d MiB each",
			putAlloc>>20, getAlloc>>20, size>>20, budget>>20)
	}
}
