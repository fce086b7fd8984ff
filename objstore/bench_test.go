package objstore_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/lifeline-dr/lifeline/objstore"
)

// benchModes are the configurations the benchmarks compare: what a user gets
// by default with a key, without one, and with compression off.
var benchModes = []struct {
	name string
	opts objstore.Options
}{
	{"zstd3+aes", objstore.Options{Key: keyA}},
	{"zstd3", objstore.Options{}},
	{"raw+aes", objstore.Options{Key: keyA, CompressionLevel: -1}},
}

const benchSize = 64 << 20

// BenchmarkPut stores 64 MiB of pgbench_accounts-like heap pages in a
// file:// repository; MB/s is of plaintext.
func BenchmarkPut(b *testing.B) {
	data := pgbenchPages(benchSize)
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			s := open(b, "file://"+b.TempDir(), m.opts)
			b.SetBytes(benchSize)
			var info objstore.Info
			for b.Loop() {
				var err error
				info, err = s.Put(context.Background(), "base/16384/16385", bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(info.Size)/float64(info.StoredSize), "ratio")
		})
	}
}

// BenchmarkGet reads the object BenchmarkPut writes back, verifying it.
func BenchmarkGet(b *testing.B) {
	data := pgbenchPages(benchSize)
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			s := open(b, "file://"+b.TempDir(), m.opts)
			put(b, s, "base/16384/16385", data)
			b.SetBytes(benchSize)
			for b.Loop() {
				r, err := s.Get(context.Background(), "base/16384/16385")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
