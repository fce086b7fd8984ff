package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/lifeline-dr/lifeline/objstore"
)

// FuzzReadObject stores arbitrary bytes as an object and reads it back. The
// reader must not panic, and must either fail with ErrCorrupt (or ErrWrongKey)
// or return exactly the plaintext the header vouches for. With forgeCRC the
// header checksum is recomputed, so that the fuzzer gets past it and explores
// the header fields and the payload decoders.
func FuzzReadObject(f *testing.F) {
	ctx := context.Background()
	withKey, err := objstore.Open(ctx, "mem://", objstore.Options{Key: keyA})
	if err != nil {
		f.Fatal(err)
	}
	defer withKey.Close()
	// A store without a key, reading the same bucket: an in-memory bucket
	// is per Open, so it reads through the raw bucket of withKey instead.
	withoutKey, err := objstore.Open(ctx, "mem://", objstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer withoutKey.Close()
	objstore.SetChunkSize(withKey, 1024)
	objstore.SetChunkSize(withoutKey, 1024)

	for _, opts := range []*objstore.Store{withKey, withoutKey} {
		for i, data := range [][]byte{nil, []byte("x"), pgbenchPages(5000), randomBytes(3, 3000)} {
			key := string(rune('a' + i))
			put(f, opts, key, data)
			b := rawRead(f, opts, key)
			f.Add(b, false)
			f.Add(b[:len(b)-1], true)
		}
	}
	raw, err := objstore.Open(ctx, "mem://", objstore.Options{CompressionLevel: -1})
	if err != nil {
		f.Fatal(err)
	}
	put(f, raw, "r", []byte("uncompressed, unencrypted"))
	f.Add(rawRead(f, raw, "r"), false)
	raw.Close()
	f.Add([]byte("LFLOBJ\r\n\x01"), false)
	f.Add([]byte{}, false)

	f.Fuzz(func(t *testing.T, data []byte, forgeCRC bool) {
		if forgeCRC && len(data) >= objstore.HeaderLen {
			data = bytes.Clone(data)
			fixCRC(data)
		}
		for _, s := range []*objstore.Store{withKey, withoutKey} {
			rawWrite(t, s, "obj", data)
			got, err := read(s, "obj")
			if err != nil {
				if !errors.Is(err, objstore.ErrCorrupt) && !errors.Is(err, objstore.ErrWrongKey) {
					t.Fatalf("read error %v wraps neither ErrCorrupt nor ErrWrongKey", err)
				}
				continue
			}
			// Success: what came out is what the header vouches for.
			if len(data) < objstore.HeaderLen {
				t.Fatalf("read %d bytes from a %d-byte object", len(got), len(data))
			}
			if size := binary.BigEndian.Uint64(data[40:48]); uint64(len(got)) != size {
				t.Fatalf("read %d bytes, header says %d", len(got), size)
			}
			if sum := sha256.Sum256(got); !bytes.Equal(sum[:], data[48:80]) {
				t.Fatalf("read data whose SHA-256 differs from the header's")
			}
			if _, err := s.Stat(context.Background(), "obj"); err != nil {
				t.Fatalf("Get succeeded, Stat failed: %v", err)
			}
			// A short read and Close mid-stream must not panic either.
			if r, err := s.Get(context.Background(), "obj"); err == nil {
				_, _ = io.ReadFull(r, make([]byte, 10))
				r.Close()
			}
		}
	})
}
