package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/lifeline-dr/lifeline/objstore"
)

func TestMain(m *testing.M) {
	// Keep the AWS SDK away from this machine's configuration and from the
	// EC2 metadata service: the only network the tests use is 127.0.0.1.
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		os.Setenv(k, v)
	}
	os.Exit(m.Run())
}

var (
	keyA = sha256Sum("test key A")
	keyB = sha256Sum("test key B")
)

func sha256Sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func hexSum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// fileRepos returns a function making fresh file:// repositories.
func fileRepos(t *testing.T) func(t *testing.T) string {
	return func(t *testing.T) string {
		return "file://" + t.TempDir() + "/repo"
	}
}

// s3Repos starts an in-process S3-compatible server on 127.0.0.1 and returns
// a function making fresh buckets on it, and the server's backend.
func s3Repos(t *testing.T) (func(t *testing.T) string, *s3mem.Backend) {
	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	ts := httptest.NewUnstartedServer(faker.Server())
	// gofakes3 writes a second status line when a client hangs up early
	// (a Get closed before the end); net/http would log it.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.Start()
	t.Cleanup(ts.Close)
	var n atomic.Int32
	return func(t *testing.T) string {
		name := fmt.Sprintf("repo-%d", n.Add(1))
		if err := backend.CreateBucket(name); err != nil {
			t.Fatalf("create bucket: %v", err)
		}
		return s3URL(ts.URL, name)
	}, backend
}

func s3URL(endpoint, bucketAndPath string) string {
	return fmt.Sprintf("s3://%s?endpoint=%s&use_path_style=true&region=us-east-1&anonymous=true",
		bucketAndPath, url.QueryEscape(endpoint))
}

func open(t testing.TB, u string, opts objstore.Options) *objstore.Store {
	t.Helper()
	s, err := objstore.Open(context.Background(), u, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", u, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s *objstore.Store, key string, data []byte) objstore.Info {
	t.Helper()
	info, err := s.Put(context.Background(), key, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
	return info
}

// read returns the plaintext of key, or the first error of Get or Read.
func read(s *objstore.Store, key string) ([]byte, error) {
	r, err := s.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func mustRead(t testing.TB, s *objstore.Store, key string) []byte {
	t.Helper()
	b, err := read(s, key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func rawRead(t testing.TB, s *objstore.Store, key string) []byte {
	t.Helper()
	b, err := objstore.RawBucket(s).ReadAll(context.Background(), key)
	if err != nil {
		t.Fatalf("raw read %s: %v", key, err)
	}
	return b
}

func rawWrite(t testing.TB, s *objstore.Store, key string, b []byte) {
	t.Helper()
	if err := objstore.RawBucket(s).WriteAll(context.Background(), key, b, nil); err != nil {
		t.Fatalf("raw write %s: %v", key, err)
	}
}

// fixCRC recomputes the header checksum, as a forger (or a bug) would.
func fixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[88:92], crc32.Checksum(b[:88], crc32.MakeTable(crc32.Castagnoli)))
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// pgbenchPages returns n bytes shaped like pgbench_accounts heap pages: 8 KiB
// pages of a page header, line pointers and 61 tuples of (aid, bid, abalance,
// 84-character blank filler) behind 23-byte tuple headers.
func pgbenchPages(n int) []byte {
	const pageSize, tupleSize, perPage = 8192, 121, 61
	r := rand.New(rand.NewPCG(42, 7))
	out := make([]byte, 0, n+pageSize)
	page := make([]byte, pageSize)
	aid, xmin := uint32(1), uint32(1000)
	for blk := uint32(0); len(out) < n; blk++ {
		clear(page)
		binary.LittleEndian.PutUint64(page[0:], uint64(0x16A2C28)+uint64(blk)) // pd_lsn
		binary.LittleEndian.PutUint16(page[12:], uint16(24+4*perPage))         // pd_lower
		upper := pageSize
		for i := range perPage {
			upper -= (tupleSize + 7) &^ 7
			binary.LittleEndian.PutUint32(page[24+4*i:], uint32(upper)|1<<15|tupleSize<<17) // line pointer
			tup := page[upper : upper+tupleSize]
			if r.IntN(8) == 0 {
				xmin++
			}
			binary.LittleEndian.PutUint32(tup[0:], xmin)                                           // t_xmin
			binary.LittleEndian.PutUint32(tup[12:], blk)                                           // t_ctid block
			binary.LittleEndian.PutUint16(tup[16:], uint16(i+1))                                   // t_ctid offset
			binary.LittleEndian.PutUint16(tup[18:], 4)                                             // t_infomask2
			binary.LittleEndian.PutUint16(tup[20:], 0x0902)                                        // t_infomask
			tup[22] = 24                                                                           // t_hoff
			binary.LittleEndian.PutUint32(tup[24:], aid)                                           // aid
			binary.LittleEndian.PutUint32(tup[28:], aid/100000+1)                                  // bid
			binary.LittleEndian.PutUint32(tup[32:], uint32(r.IntN(5000)-2500)*uint32(r.IntN(3)/2)) // abalance
			tup[36] = byte(85<<1 | 1)                                                              // short varlena header
			copy(tup[37:], strings.Repeat(" ", 84))
			aid++
		}
		binary.LittleEndian.PutUint16(page[14:], uint16(upper)) // pd_upper
		out = append(out, page...)
	}
	return out[:n]
}

// failingReader returns n bytes of data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// wantErr fails unless err wraps target and its message names key and
// contains every fragment.
func wantErr(t testing.TB, err, target error, key string, fragments ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %v", err, target)
	}
	msg := err.Error()
	if key != "" && !strings.Contains(msg, key) {
		t.Errorf("error %q does not name key %q", msg, key)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not say %q", msg, f)
		}
	}
}
