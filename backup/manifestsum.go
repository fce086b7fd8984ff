package backup

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32cHex renders a CRC-32C as backup_manifest does: PostgreSQL copies the
// uint32 into the checksum buffer in the machine's byte order and prints its
// bytes in hex, so on the little-endian machines PostgreSQL runs on the
// least significant byte comes first (the check value 0xE3069283 of
// "123456789" is written "839206e3").
func crc32cHex(c uint32) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], c)
	return hex.EncodeToString(b[:])
}

// fileChecksum reads a file and returns its checksum with one of the
// algorithms backup_manifest names.
func fileChecksum(name, alg string) (string, error) {
	var h hash.Hash
	switch strings.ToUpper(alg) {
	case "CRC32C":
		h = crc32.New(castagnoli)
	case "SHA224":
		h = sha256.New224()
	case "SHA256":
		h = sha256.New()
	case "SHA384":
		h = sha512.New384()
	case "SHA512":
		h = sha512.New()
	default:
		return "", fmt.Errorf("%w: backup_manifest names checksum algorithm %q", ErrCorrupt, alg)
	}
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	if h32, ok := h.(hash.Hash32); ok {
		return crc32cHex(h32.Sum32()), nil
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Write-back of restored files: every writeBackChunk bytes of a file, and at
// its end when at least writeBackMin bytes are not yet under way (smaller
// files are left to PostgreSQL's own sync at startup).
const (
	writeBackChunk = 8 << 20
	writeBackMin   = 256 << 10
)

// startWriteBack asks the kernel to start writing a range of f to disk
// without waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE, as
// PostgreSQL's own pre-sync does). It is only a hint: durability still comes
// from PostgreSQL's fsync of the data directory, so errors are ignored.
func startWriteBack(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
