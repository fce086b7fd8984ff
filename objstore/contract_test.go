package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lifeline-dr/lifeline/objstore"
)

func TestStore_File(t *testing.T) { runContract(t, fileRepos(t)) }

func TestStore_S3(t *testing.T) {
	repos, _ := s3Repos(t)
	runContract(t, repos)
}

// runContract runs the behaviour every repository must have. newRepo returns
// the URL of a fresh, empty repository; opening it several times (with other
// keys) opens the same repository.
func runContract(t *testing.T, newRepo func(t *testing.T) string) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newRepo) })
	t.Run("PutIfAbsent", func(t *testing.T) { testPutIfAbsent(t, newRepo) })
	t.Run("PutIfAbsentTorn", func(t *testing.T) { testPutIfAbsentTorn(t, newRepo) })
	t.Run("PutIfAbsentConcurrent", func(t *testing.T) { testPutIfAbsentConcurrent(t, newRepo) })
	t.Run("Corruption", func(t *testing.T) { testCorruption(t, newRepo) })
	t.Run("WrongKey", func(t *testing.T) { testWrongKey(t, newRepo) })
	t.Run("Copy", func(t *testing.T) { testCopy(t, newRepo) })
	t.Run("List", func(t *testing.T) { testList(t, newRepo) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newRepo) })
	t.Run("AbortedPut", func(t *testing.T) { testAbortedPut(t, newRepo) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, newRepo) })
}

var modes = []struct {
	name string
	opts objstore.Options
}{
	{"zstd", objstore.Options{}},
	{"zstd+aes", objstore.Options{Key: keyA}},
	{"zstd19+aes", objstore.Options{Key: keyA, CompressionLevel: 19}},
	{"raw+aes", objstore.Options{Key: keyA, CompressionLevel: -1}},
	{"raw", objstore.Options{CompressionLevel: -1}},
}

func testRoundTrip(t *testing.T, newRepo func(t *testing.T) string) {
	payloads := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0}},
		{"small", []byte("backup_label: START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n")},
		{"two chunks exactly", randomBytes(1, 2<<20)},
		{"5MiB random", randomBytes(2, 5<<20)},
		{"3MiB pages", pgbenchPages(3 << 20)},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := open(t, newRepo(t), m.opts)
			for _, p := range payloads {
				t.Run(p.name, func(t *testing.T) {
					key := "rt/" + strings.ReplaceAll(p.name, " ", "-")
					info := put(t, s, key, p.data)
					want := objstore.Info{
						Key: key, Size: int64(len(p.data)), SHA256: hexSum(p.data),
						Compressed: m.opts.CompressionLevel >= 0, Encrypted: m.opts.Key != nil,
						StoredSize: info.StoredSize,
					}
					if info != want {
						t.Errorf("Put info = %+v, want %+v", info, want)
					}
					if got := mustRead(t, s, key); !bytes.Equal(got, p.data) {
						t.Fatalf("Get returned %d bytes (sha %s), want %d (sha %s)", len(got), hexSum(got), len(p.data), want.SHA256)
					}
					stat, err := s.Stat(context.Background(), key)
					if err != nil {
						t.Fatalf("Stat: %v", err)
					}
					if stat.ModTime.IsZero() {
						t.Errorf("Stat ModTime is zero")
					}
					stat.ModTime = info.ModTime
					if stat != info {
						t.Errorf("Stat = %+v, want Put's %+v", stat, info)
					}
					raw := rawRead(t, s, key)
					if int64(len(raw)) != info.StoredSize {
						t.Errorf("stored %d bytes, StoredSize says %d", len(raw), info.StoredSize)
					}
					if m.opts.Key != nil && len(p.data) >= 16 && bytes.Contains(raw, p.data[:16]) {
						t.Errorf("encrypted object contains plaintext")
					}
				})
			}
		})
	}
}

func testPutIfAbsent(t *testing.T, newRepo func(t *testing.T) string) {
	ctx := context.Background()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := open(t, newRepo(t), m.opts)
			// Larger than the in-memory spool, as an incompressible WAL segment is.
			seg1, seg2 := randomBytes(10, 9<<20), randomBytes(11, 9<<20)
			const key = "wal/000000010000000000000003"

			first, err := s.PutIfAbsent(ctx, key, bytes.NewReader(seg1))
			if err != nil {
				t.Fatalf("first PutIfAbsent: %v", err)
			}
			stored := rawRead(t, s, key)

			again, err := s.PutIfAbsent(ctx, key, bytes.NewReader(seg1))
			if err != nil {
				t.Fatalf("PutIfAbsent of the same content: %v", err)
			}
			if again.SHA256 != first.SHA256 || again.Size != first.Size {
				t.Errorf("re-push info = %+v, want %+v", again, first)
			}
			// Encryption uses a random salt: a rewrite would change the bytes.
			if !bytes.Equal(rawRead(t, s, key), stored) {
				t.Errorf("re-push of the same content rewrote the object")
			}

			_, err = s.PutIfAbsent(ctx, key, bytes.NewReader(seg2))
			wantErr(t, err, objstore.ErrConflict, key, first.SHA256, hexSum(seg2))
			if !bytes.Equal(rawRead(t, s, key), stored) {
				t.Errorf("conflicting PutIfAbsent changed the stored object")
			}
			if got := mustRead(t, s, key); !bytes.Equal(got, seg1) {
				t.Errorf("after a conflict Get returns other content")
			}

			// An unreadable object in the way is reported, not overwritten.
			const bad = "wal/000000010000000000000004"
			rawWrite(t, s, bad, []byte("half-written by some other tool"))
			_, err = s.PutIfAbsent(ctx, bad, bytes.NewReader(seg1))
			wantErr(t, err, objstore.ErrCorrupt, bad, "bad magic")
			if got := rawRead(t, s, bad); string(got) != "half-written by some other tool" {
				t.Errorf("PutIfAbsent overwrote a corrupt object")
			}
		})
	}
}

func testPutIfAbsentConcurrent(t *testing.T, newRepo func(t *testing.T) string) {
	ctx := context.Background()
	s := open(t, newRepo(t), objstore.Options{Key: keyA})
	const writers = 4
	const key = "wal/race"
	contents := make([][]byte, writers)
	for i := range contents {
		contents[i] = randomBytes(uint64(100+i), 256<<10)
	}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = s.PutIfAbsent(ctx, key, bytes.NewReader(contents[i]))
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both succeeded with different content", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, objstore.ErrConflict):
			t.Fatalf("writer %d: %v, want success or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no writer succeeded: %v", errs)
	}
	if got := mustRead(t, s, key); !bytes.Equal(got, contents[winner]) {
		t.Errorf("stored content is not the winner's")
	}
}

func testCorruption(t *testing.T, newRepo func(t *testing.T) string) {
	const H = objstore.HeaderLen
	const sealedChunk = 1<<20 + 16
	flip := func(at func(b []byte) int) func([]byte) []byte {
		return func(b []byte) []byte { b[at(b)] ^= 0x01; return b }
	}
	at := func(i int) func([]byte) int { return func([]byte) int { return i } }
	cases := []struct {
		name     string
		damage   func(b []byte) []byte
		stat     bool     // Stat detects it too (it reads only the header)
		want     []string // in the error of either mode
		wantEnc  []string // only for an encrypted object
		wantPlan []string // only for an unencrypted one
	}{
		{name: "magic", damage: flip(at(0)), stat: true, want: []string{"bad magic"}},
		{name: "version", damage: func(b []byte) []byte { b[8] = 9; return b }, stat: true,
			want: []string{"unsupported format version 9"}},
		{name: "flags byte", damage: flip(at(9)), stat: true, want: []string{"header checksum mismatch"}},
		{name: "plaintext size field", damage: flip(at(47)), stat: true, want: []string{"header checksum mismatch"}},
		{name: "checksum field", damage: flip(at(60)), stat: true, want: []string{"header checksum mismatch"}},
		{name: "header crc", damage: flip(at(91)), stat: true, want: []string{"header checksum mismatch"}},
		{name: "checksum field with forged crc",
			damage:   func(b []byte) []byte { b[60] ^= 1; fixCRC(b); return b },
			wantEnc:  []string{"authentication failed at chunk 3 of 3", "wrong key or corrupted"},
			wantPlan: []string{"checksum mismatch"}},
		{name: "payload byte in first chunk", damage: flip(at(H + 1000)),
			wantEnc: []string{"authentication failed at chunk 1 of 3", "wrong key or corrupted"}},
		{name: "payload byte in second chunk", damage: flip(at(H + sealedChunk + 7)),
			wantEnc: []string{"authentication failed at chunk 2 of 3", "wrong key or corrupted"}},
		{name: "last byte", damage: flip(func(b []byte) int { return len(b) - 1 }),
			wantEnc: []string{"authentication failed at chunk 3 of 3"}},
		{name: "truncated in payload", damage: func(b []byte) []byte { return b[:len(b)-1000] }, stat: true,
			want: []string{"truncated"}},
		{name: "truncated at chunk boundary", damage: func(b []byte) []byte { return b[:H+2*sealedChunk] }, stat: true,
			want: []string{"truncated"}},
		{name: "truncated after header", damage: func(b []byte) []byte { return b[:H] }, stat: true,
			want: []string{"truncated"}},
		{name: "truncated in header", damage: func(b []byte) []byte { return b[:50] }, stat: true,
			want: []string{"truncated", "shorter than the 92-byte header"}},
		{name: "empty object", damage: func(b []byte) []byte { return b[:0] }, stat: true,
			want: []string{"truncated"}},
		{name: "trailing data", damage: func(b []byte) []byte { return append(b, 0) }, stat: true,
			want: []string{"data after the payload"}},
		{name: "not an object", damage: func([]byte) []byte { return []byte("<html>404</html>") }, stat: true,
			want: []string{"bad magic"}},
	}
	// 2.5 MiB of random data: three encrypted chunks, the last one partial.
	data := randomBytes(20, 5<<19)
	for _, m := range []struct {
		name string
		opts objstore.Options
	}{{"encrypted", objstore.Options{Key: keyA}}, {"plain", objstore.Options{}}} {
		t.Run(m.name, func(t *testing.T) {
			s := open(t, newRepo(t), m.opts)
			put(t, s, "pristine", data)
			pristine := rawRead(t, s, "pristine")
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					key := "damaged/" + strings.ReplaceAll(c.name, " ", "-")
					rawWrite(t, s, key, c.damage(bytes.Clone(pristine)))
					want := c.want
					if m.opts.Key != nil {
						want = append(want, c.wantEnc...)
					} else {
						want = append(want, c.wantPlan...)
					}
					_, err := read(s, key)
					wantErr(t, err, objstore.ErrCorrupt, key, want...)

					_, err = s.Stat(context.Background(), key)
					if c.stat {
						wantErr(t, err, objstore.ErrCorrupt, key, want...)
					} else if err != nil {
						t.Errorf("Stat of an object with an intact header: %v", err)
					}

					// Get never hands out a damaged object whole: a
					// streaming reader sees the error before io.EOF.
					if r, err := s.Get(context.Background(), key); err == nil {
						var buf bytes.Buffer
						_, err = buf.ReadFrom(r)
						r.Close()
						if err == nil {
							t.Errorf("streaming read of a damaged object ended without error")
						}
					}
				})
			}
		})
	}
}

func testWrongKey(t *testing.T, newRepo func(t *testing.T) string) {
	repo := newRepo(t)
	withA := open(t, repo, objstore.Options{Key: keyA})
	withB := open(t, repo, objstore.Options{Key: keyB})
	without := open(t, repo, objstore.Options{})
	const key = "base/20260101T000000/base.tar"
	put(t, withA, key, pgbenchPages(1<<20))

	_, err := read(withB, key)
	wantErr(t, err, objstore.ErrWrongKey, key, "key id")
	if errors.Is(err, objstore.ErrCorrupt) {
		t.Errorf("a wrong key is reported as corruption: %v", err)
	}
	_, err = read(without, key)
	wantErr(t, err, objstore.ErrWrongKey, key, "encrypted", "no key")

	// The header is readable without the key.
	info, err := without.Stat(context.Background(), key)
	if err != nil || !info.Encrypted {
		t.Errorf("Stat without key = %+v, %v; want an encrypted object", info, err)
	}
	// Unencrypted objects are readable whatever the key.
	put(t, without, "manifest.json", []byte(`{"label":"x"}`))
	if got := mustRead(t, withB, "manifest.json"); string(got) != `{"label":"x"}` {
		t.Errorf("read of an unencrypted object with a key = %q", got)
	}
}

func testCopy(t *testing.T, newRepo func(t *testing.T) string) {
	ctx := context.Background()
	srcRepo, dstRepo := newRepo(t), newRepo(t)
	src := open(t, srcRepo, objstore.Options{Key: keyA})
	dst := open(t, dstRepo, objstore.Options{Key: keyA})
	objects := map[string][]byte{
		"wal/000000010000000000000001": pgbenchPages(2 << 20),
		"base/1/base.tar":              randomBytes(30, 5<<20),
		"base/1/backup_manifest":       []byte("{}"),
		"empty":                        nil,
	}
	for key, data := range objects {
		put(t, src, key, data)
		if err := src.Copy(ctx, dst, key); err != nil {
			t.Fatalf("Copy(%s): %v", key, err)
		}
		if got := mustRead(t, dst, key); !bytes.Equal(got, data) {
			t.Errorf("%s: copy reads back other content", key)
		}
		if !bytes.Equal(rawRead(t, src, key), rawRead(t, dst, key)) {
			t.Errorf("%s: copy is not byte for byte", key)
		}
	}

	t.Run("copier without key", func(t *testing.T) {
		copier := open(t, srcRepo, objstore.Options{})
		put(t, src, "keyless", []byte("copied by a process that cannot read it"))
		if err := copier.Copy(ctx, dst, "keyless"); err != nil {
			t.Fatalf("Copy: %v", err)
		}
		if got := mustRead(t, dst, "keyless"); string(got) != "copied by a process that cannot read it" {
			t.Errorf("copy reads back %q", got)
		}
	})
	t.Run("destination with another key", func(t *testing.T) {
		dstB := open(t, dstRepo, objstore.Options{Key: keyB})
		put(t, src, "other-key", []byte("x"))
		wantErr(t, src.Copy(ctx, dstB, "other-key"), objstore.ErrWrongKey, "other-key", "key id")
		_, err := dst.Stat(ctx, "other-key")
		wantErr(t, err, objstore.ErrNotFound, "other-key")
	})
	t.Run("corrupt source", func(t *testing.T) {
		const key = "base/2/base.tar"
		put(t, src, key, randomBytes(31, 3<<20))
		put(t, dst, key, []byte("previous copy"))
		b := rawRead(t, src, key)
		b[len(b)/2] ^= 0x80
		rawWrite(t, src, key, b)
		wantErr(t, src.Copy(ctx, dst, key), objstore.ErrCorrupt, key, "authentication failed")
		if got := mustRead(t, dst, key); string(got) != "previous copy" {
			t.Errorf("a failed copy changed the destination")
		}
		// A keyless copier still catches a truncated source.
		rawWrite(t, src, key, b[:len(b)-10])
		copier := open(t, srcRepo, objstore.Options{})
		wantErr(t, copier.Copy(ctx, dst, key), objstore.ErrCorrupt, key, "truncated")
	})
	t.Run("missing", func(t *testing.T) {
		wantErr(t, src.Copy(ctx, dst, "nope"), objstore.ErrNotFound, "nope")
	})
}

func testList(t *testing.T, newRepo func(t *testing.T) string) {
	ctx := context.Background()
	s := open(t, newRepo(t), objstore.Options{Key: keyA})
	keys := []string{
		"wal/000000010000000000000002",
		"base/20260101T000000/base.tar",
		"wal/000000010000000000000001",
		"walrus",
		"wal/000000020000000000000002.partial",
	}
	for i, k := range keys {
		put(t, s, k, randomBytes(uint64(i), 1000*i))
	}
	list := func(prefix string) []string {
		var got []string
		for e, err := range s.List(ctx, prefix) {
			if err != nil {
				t.Fatalf("List(%q): %v", prefix, err)
			}
			info, err := s.Stat(ctx, e.Key)
			if err != nil {
				t.Fatalf("Stat(%s): %v", e.Key, err)
			}
			if e.StoredSize != info.StoredSize || e.ModTime.IsZero() {
				t.Errorf("List entry %+v, Stat says StoredSize %d", e, info.StoredSize)
			}
			got = append(got, e.Key)
		}
		return got
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"wal/", []string{"wal/000000010000000000000001", "wal/000000010000000000000002", "wal/000000020000000000000002.partial"}},
		{"wal", []string{"wal/000000010000000000000001", "wal/000000010000000000000002", "wal/000000020000000000000002.partial", "walrus"}},
		{"", slices.Sorted(slices.Values(keys))},
		{"nothing/", nil},
	} {
		if got := list(c.prefix); !slices.Equal(got, c.want) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	n := 0
	for range s.List(ctx, "") {
		n++
		break
	}
	if n != 1 {
		t.Errorf("breaking out of List yielded %d entries", n)
	}
}

func testDelete(t *testing.T, newRepo func(t *testing.T) string) {
	ctx := context.Background()
	s := open(t, newRepo(t), objstore.Options{})
	put(t, s, "a/1", []byte("one"))
	put(t, s, "a/2", []byte("two"))
	if err := s.Delete(ctx, "a/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := read(s, "a/1")
	wantErr(t, err, objstore.ErrNotFound, "a/1")
	wantErr(t, s.Delete(ctx, "a/1"), objstore.ErrNotFound, "a/1")
	if got := mustRead(t, s, "a/2"); string(got) != "two" {
		t.Errorf("Delete removed a neighbour")
	}
}

func testAbortedPut(t *testing.T, newRepo func(t *testing.T) string) {
	ctx := context.Background()
	s := open(t, newRepo(t), objstore.Options{Key: keyA})
	put(t, s, "kept", []byte("original"))
	errDisk := errors.New("read error on the data directory")
	big := randomBytes(40, 12<<20) // spills to a temporary file

	for _, c := range []struct {
		name   string
		reader func(cancel context.CancelFunc) io.Reader
		want   error
	}{
		{"reader error", func(context.CancelFunc) io.Reader { return &failingReader{big, errDisk} }, errDisk},
		{"cancelled while reading", func(cancel context.CancelFunc) io.Reader {
			return &cancellingReader{data: big, left: len(big) / 2, cancel: cancel}
		}, context.Canceled},
		{"cancelled at the end", func(cancel context.CancelFunc) io.Reader {
			return &cancellingReader{data: big, left: len(big), cancel: cancel}
		}, context.Canceled},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, key := range []string{"kept", "new"} {
				ctx, cancel := context.WithCancel(ctx)
				_, err := s.Put(ctx, key, c.reader(cancel))
				cancel()
				if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), key) {
					t.Fatalf("Put(%s) = %v, want an error wrapping %v", key, err, c.want)
				}
			}
			if got := mustRead(t, s, "kept"); string(got) != "original" {
				t.Errorf("aborted Put replaced the object: %q", got)
			}
			_, err := s.Stat(ctx, "new")
			wantErr(t, err, objstore.ErrNotFound, "new")
			var keys []string
			for e, err := range s.List(ctx, "") {
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, e.Key)
			}
			if !slices.Equal(keys, []string{"kept"}) {
				t.Errorf("after aborted Puts the repository holds %q", keys)
			}
		})
	}
}

// cancellingReader returns data and cancels a context after left bytes
// (left == len(data): just before reporting io.EOF).
type cancellingReader struct {
	data   []byte
	left   int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.left == 0 {
		c.cancel()
		c.left = -1
	}
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	if c.left > 0 && len(p) > c.left {
		p = p[:c.left]
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	if c.left > 0 {
		c.left -= n
	}
	return n, nil
}

func testNotFound(t *testing.T, newRepo func(t *testing.T) string) {
	ctx := context.Background()
	s := open(t, newRepo(t), objstore.Options{})
	_, err := s.Get(ctx, "missing/key")
	wantErr(t, err, objstore.ErrNotFound, "missing/key")
	_, err = s.Stat(ctx, "missing/key")
	wantErr(t, err, objstore.ErrNotFound, "missing/key")
	if !strings.HasPrefix(fmt.Sprint(err), "stat missing/key") {
		t.Errorf("error %q does not start with the operation and key", err)
	}
}
