package objstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// Version 1 of the object format. doc.go describes it for humans; this file is
// the normative definition.
const (
	magic         = "LFLOBJ\r\n"
	formatVersion = 1

	flagCompressed = 1 << 0
	flagEncrypted  = 1 << 1
	knownFlags     = flagCompressed | flagEncrypted

	compressionNone = 0
	compressionZstd = 1

	cipherNone      = 0
	cipherAESGCMv1  = 1 // AES-256-GCM in chunks, per-object subkey from HKDF-SHA256
	gcmTagSize      = 16
	defaultChunk    = 1 << 20
	minChunk        = 1 << 10
	maxChunk        = 16 << 20
	saltSize        = 16
	keyIDSize       = 8
	headerFixedLen  = 40 // bytes [0,40): known before the payload is written
	headerSealedLen = 88 // bytes [0,88): everything but the CRC
	headerLen       = 92
)

// Offsets of the header fields.
const (
	offVersion     = 8
	offFlags       = 9
	offCompression = 10
	offCipher      = 11
	offChunkSize   = 12
	offSalt        = 16
	offKeyID       = 32
	offSize        = 40
	offSHA256      = 48
	offPayloadSize = 80
	offCRC         = 88
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the decoded fixed-size header that starts every object.
type header struct {
	compression byte
	cipher      byte
	chunkSize   uint32
	salt        [saltSize]byte
	keyID       [keyIDSize]byte
	size        int64 // plaintext bytes
	sha256      [32]byte
	payloadSize int64 // bytes after the header
}

func (h *header) compressed() bool { return h.compression != compressionNone }
func (h *header) encrypted() bool  { return h.cipher != cipherNone }

// storedSize is the exact length of the object in the bucket.
func (h *header) storedSize() int64 { return headerLen + h.payloadSize }

// marshal encodes h; the result is headerLen bytes.
func (h *header) marshal() []byte {
	b := make([]byte, headerLen)
	copy(b, magic)
	b[offVersion] = formatVersion
	var flags byte
	if h.compressed() {
		flags |= flagCompressed
	}
	if h.encrypted() {
		flags |= flagEncrypted
	}
	b[offFlags] = flags
	b[offCompression] = h.compression
	b[offCipher] = h.cipher
	binary.BigEndian.PutUint32(b[offChunkSize:], h.chunkSize)
	copy(b[offSalt:], h.salt[:])
	copy(b[offKeyID:], h.keyID[:])
	binary.BigEndian.PutUint64(b[offSize:], uint64(h.size))
	copy(b[offSHA256:], h.sha256[:])
	binary.BigEndian.PutUint64(b[offPayloadSize:], uint64(h.payloadSize))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[:offCRC], castagnoli))
	return b
}

// readHeader reads and validates the header at the start of r. Every
// validation failure wraps ErrCorrupt; I/O errors are returned as they are.
func readHeader(r io.Reader) (header, []byte, error) {
	b := make([]byte, headerLen)
	// Magic and version first, so that a future format with a different
	// header length is reported as "unsupported version", not as a CRC error.
	if n, err := io.ReadFull(r, b[:offVersion+1]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if m := min(n, len(magic)); string(b[:m]) != magic[:m] {
				return header{}, nil, corruptf("bad magic: not a lifeline object")
			}
			return header{}, nil, corruptf("truncated: object is %d bytes, shorter than the %d-byte header", n, headerLen)
		}
		return header{}, nil, err
	}
	if string(b[:len(magic)]) != magic {
		return header{}, nil, corruptf("bad magic %q: not a lifeline object", b[:len(magic)])
	}
	if v := b[offVersion]; v != formatVersion {
		return header{}, nil, corruptf("unsupported format version %d (this build reads version %d: a newer Lifeline wrote the object, or its header is damaged)", v, formatVersion)
	}
	if n, err := io.ReadFull(r, b[offVersion+1:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return header{}, nil, corruptf("truncated: object is %d bytes, shorter than the %d-byte header", offVersion+1+n, headerLen)
		}
		return header{}, nil, err
	}
	h, err := parseHeader(b)
	return h, b, err
}

// parseHeader decodes a complete header.
func parseHeader(b []byte) (header, error) {
	if want, got := crc32.Checksum(b[:offCRC], castagnoli), binary.BigEndian.Uint32(b[offCRC:]); want != got {
		return header{}, corruptf("header checksum mismatch (CRC-32C %08x, header says %08x): flipped bits in the header", want, got)
	}
	h := header{
		compression: b[offCompression],
		cipher:      b[offCipher],
		chunkSize:   binary.BigEndian.Uint32(b[offChunkSize:]),
	}
	copy(h.salt[:], b[offSalt:])
	copy(h.keyID[:], b[offKeyID:])
	copy(h.sha256[:], b[offSHA256:])
	size := binary.BigEndian.Uint64(b[offSize:])
	payload := binary.BigEndian.Uint64(b[offPayloadSize:])

	flags := b[offFlags]
	switch {
	case flags&^knownFlags != 0:
		return header{}, corruptf("unknown header flags %#02x", flags)
	case h.compression > compressionZstd:
		return header{}, corruptf("unsupported compression algorithm id %d", h.compression)
	case h.cipher > cipherAESGCMv1:
		return header{}, corruptf("unsupported cipher id %d", h.cipher)
	case (flags&flagCompressed != 0) != h.compressed():
		return header{}, corruptf("header flags %#02x disagree with compression id %d", flags, h.compression)
	case (flags&flagEncrypted != 0) != h.encrypted():
		return header{}, corruptf("header flags %#02x disagree with cipher id %d", flags, h.cipher)
	case size > math.MaxInt64 || payload > math.MaxInt64-headerLen:
		return header{}, corruptf("impossible sizes in header (plaintext %d, payload %d)", size, payload)
	}
	h.size, h.payloadSize = int64(size), int64(payload)
	if h.encrypted() {
		if h.chunkSize < minChunk || h.chunkSize > maxChunk {
			return header{}, corruptf("chunk size %d out of range [%d, %d]", h.chunkSize, minChunk, maxChunk)
		}
		if _, _, err := chunkLayout(h.payloadSize, int64(h.chunkSize)); err != nil {
			return header{}, err
		}
	} else if h.chunkSize != 0 {
		return header{}, corruptf("chunk size %d set on an unencrypted object", h.chunkSize)
	}
	return h, nil
}

// chunkLayout returns the number of encrypted chunks in a payload of n bytes
// and the sealed length of the last one. Every chunk but the last carries
// exactly chunk plaintext bytes; the last carries 0 to chunk bytes.
func chunkLayout(n, chunk int64) (count, last int64, err error) {
	sealed := chunk + gcmTagSize
	if n < gcmTagSize {
		return 0, 0, corruptf("encrypted payload of %d bytes is shorter than one chunk tag", n)
	}
	count = (n + sealed - 1) / sealed
	last = n - (count-1)*sealed
	if last < gcmTagSize {
		return 0, 0, corruptf("encrypted payload of %d bytes does not split into %d-byte chunks", n, sealed)
	}
	return count, last, nil
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
