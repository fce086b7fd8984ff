package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The byte order of CRC-32C checksums in backup_manifest: PostgreSQL writes
// the bytes of the uint32 as they lie in memory, least significant first.
func TestCRC32CHex(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		// The CRC-32C check value, 0xE3069283.
		{"check value", "123456789", "839206e3"},
		// PG_VERSION of a PostgreSQL 15 backup, as its backup_manifest says
		// (pg_basebackup --manifest-checksums=CRC32C).
		{"PG_VERSION", "15\n", "8a744722"},
		{"empty", "", "00000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := crc32cHex(crc32.Checksum([]byte(tc.in), castagnoli)); got != tc.want {
				t.Errorf("crc32cHex(CRC-32C(%q)) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestFileChecksum(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("15\n"))
	for alg, want := range map[string]string{"CRC32C": "8a744722", "sha256": hex.EncodeToString(sum[:])} {
		got, err := fileChecksum(name, alg)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("fileChecksum(%s) = %s, want %s", alg, got, want)
		}
	}
	if _, err := fileChecksum(name, "MD5"); err == nil || !strings.Contains(err.Error(), "MD5") {
		t.Errorf("fileChecksum(MD5): %v, want an error naming the algorithm", err)
	}
}

// tarStream builds a tar stream as PostgreSQL's, without the end marker.
func tarStream(t testing.TB, files map[string]string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "global/", Mode: 0o700, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o600, Size: int64(len(files[n])), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The scanner sees the stream in whatever pieces the server's messages
// cut it into: every way of cutting it must give the same result.
func TestTarScan_Chunks(t *testing.T) {
	files := map[string]string{
		"backup_label":      "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
		"PG_VERSION":        "15\n",
		"global/pg_control": strings.Repeat("\x01", 8192),
		"base/1/1259":       strings.Repeat("x", 3*blockSize+17),
		"empty":             "",
	}
	stream := append(tarStream(t, files), manifestMember([]byte("{}\n"))...)
	want := map[string]int64{"backup_manifest": 3}
	for n, c := range files {
		want[n] = int64(len(c))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, max := range []int{1, 7, 511, 512, 513, 4096, len(stream)} {
		s := &tarScan{files: map[string]int64{}}
		for b := stream; len(b) > 0; {
			k := min(len(b), 1+rng.IntN(max))
			s.write(b[:k])
			b = b[k:]
		}
		s.finish()
		if s.err != nil {
			t.Fatalf("pieces up to %d bytes: %v", max, s.err)
		}
		if diff := cmp.Diff(want, s.files); diff != "" {
			t.Errorf("pieces up to %d bytes: files (-want +got):\n%s", max, diff)
		}
		if string(s.label) != files["backup_label"] || string(s.version) != "15\n" || string(s.control) != files["global/pg_control"] || string(s.manifest) != "{}\n" {
			t.Errorf("pieces up to %d bytes: kept members differ", max)
		}
	}

	for _, tc := range []struct {
		name   string
		stream []byte
		err    string
	}{
		{"truncated member", stream[:2*blockSize+10], "truncated"},
		{"no end marker", tarStream(t, files), "truncated"},
		{"data after the end", append(append(tarStream(t, files), make([]byte, 2*blockSize)...), stream[:blockSize]...), "after the end-of-archive"},
		{"damaged header", append([]byte("garbage"), stream[7:]...), "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &tarScan{files: map[string]int64{}}
			s.write(tc.stream)
			s.finish()
			if s.err == nil || !strings.Contains(s.err.Error(), tc.err) {
				t.Errorf("scan: %v, want an error containing %q", s.err, tc.err)
			}
		})
	}
}

func FuzzTarScan(f *testing.F) {
	f.Add(append(tarStream(f, map[string]string{"PG_VERSION": "15\n"}), manifestMember([]byte("{}\n"))...), uint8(7))
	f.Add(make([]byte, 2*blockSize), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, piece uint8) {
		s := &tarScan{files: map[string]int64{}}
		for p := b; len(p) > 0; {
			k := min(len(p), 1+int(piece))
			s.write(p[:k])
			p = p[k:]
		}
		s.finish()
		if s.err == nil && !s.ended {
			t.Fatal("accepted a stream without an end marker")
		}
	})
}
