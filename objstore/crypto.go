package objstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/scrypt"
)

// KeySize is the length of an encryption key: AES-256.
const KeySize = 32

// Passphrase derivation parameters. scrypt with N=2^15, r=8 costs about 32 MiB
// and a few tens of milliseconds per call: enough to make guessing a weak
// passphrase expensive, cheap enough for wal-push, which runs once per WAL
// segment and derives the key every time. The salt is fixed (the same
// passphrase must give the same key in every region and every process), so it
// only separates Lifeline keys from other uses of the passphrase.
const (
	scryptN    = 1 << 15
	scryptR    = 8
	scryptP    = 1
	scryptSalt = "lifeline objstore passphrase v1"
)

// Labels for the keys derived from the master key.
const (
	keyIDLabel   = "lifeline objstore key id v1"
	subkeyLabel  = "lifeline objstore aes-256-gcm chunk key v1"
	nonceCounter = 11 // bytes of big-endian chunk counter in a nonce; the 12th is the last-chunk flag
)

// KeyFromSecret turns a configured secret into a 32-byte key for
// Options.Key. The secret is, in this order of precedence:
//
//   - 64 hexadecimal characters: the key itself;
//   - standard or URL-safe base64, padded or not, of exactly 32 bytes: the key
//     itself (what `openssl rand -base64 32` prints);
//   - anything else: a passphrase, stretched with scrypt (N=2^15, r=8, p=1,
//     fixed salt "lifeline objstore passphrase v1") to 32 bytes.
//
// Trailing newlines are ignored, so a secret read from a file works as
// written. A random key is better than a passphrase: the derivation slows a
// guesser down but cannot make a short passphrase strong.
func KeyFromSecret(secret string) ([]byte, error) {
	s := strings.TrimRight(secret, "\r\n")
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("key from secret: secret is empty")
	}
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	k, err := scrypt.Key([]byte(s), []byte(scryptSalt), scryptN, scryptR, scryptP, KeySize)
	if err != nil {
		return nil, fmt.Errorf("key from secret: %w", err)
	}
	return k, nil
}

// keyID is a public fingerprint of a master key, stored in every encrypted
// object so that a reader holding another key says "wrong key" instead of
// failing authentication. It reveals nothing about the key beyond letting an
// observer group objects by key.
func keyID(key []byte) [keyIDSize]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(keyIDLabel))
	var id [keyIDSize]byte
	copy(id[:], m.Sum(nil))
	return id
}

// objectAEAD derives the per-object AES-256-GCM key from the master key and
// the object's random salt. A fresh key per object lets nonces be plain chunk
// counters, with no birthday bound on random nonces across the millions of
// WAL segments written under one master key.
func objectAEAD(master []byte, salt [saltSize]byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, master, salt[:], subkeyLabel, KeySize)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// chunkNonce is the 96-bit nonce of chunk i: an 11-byte big-endian counter
// and a final byte that is 1 on the last chunk only, so that dropping or
// reordering chunks, or cutting the object at a chunk boundary, fails
// authentication.
func chunkNonce(dst *[12]byte, i uint64, last bool) []byte {
	*dst = [12]byte{}
	binary.BigEndian.PutUint64(dst[nonceCounter-8:nonceCounter], i)
	if last {
		dst[nonceCounter] = 1
	}
	return dst[:]
}

// sealer splits what is written to it into fixed-size chunks and writes each
// one sealed with AES-GCM. It holds one chunk back, because only Close knows
// which chunk is the last.
type sealer struct {
	aead  cipher.AEAD
	w     io.Writer
	ad    []byte // additional data of every chunk but the last
	buf   []byte // plaintext of the pending chunk, cap = chunk size
	out   []byte
	n     uint64
	nonce [12]byte
}

var _ io.Writer = (*sealer)(nil)

func newSealer(w io.Writer, aead cipher.AEAD, chunk int, ad []byte) *sealer {
	return &sealer{
		aead: aead,
		w:    w,
		ad:   ad,
		buf:  make([]byte, 0, chunk),
		out:  make([]byte, 0, chunk+gcmTagSize),
	}
}

func (s *sealer) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		if len(s.buf) == cap(s.buf) {
			// More data follows a full chunk: it is not the last one.
			if err := s.seal(false, s.ad); err != nil {
				return total, err
			}
		}
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
		total += k
	}
	return total, nil
}

// pendingSealed is the sealed size of the chunk that finish will write.
func (s *sealer) pendingSealed() int64 { return int64(len(s.buf) + gcmTagSize) }

// finish seals the pending chunk as the last one, authenticating lastAD (the
// complete header, known only now).
func (s *sealer) finish(lastAD []byte) error { return s.seal(true, lastAD) }

func (s *sealer) seal(last bool, ad []byte) error {
	s.out = s.aead.Seal(s.out[:0], chunkNonce(&s.nonce, s.n, last), s.buf, ad)
	s.n++
	s.buf = s.buf[:0]
	_, err := s.w.Write(s.out)
	return err
}

// opener reads the chunks of an encrypted payload, exactly payloadSize bytes
// long, and returns their authenticated plaintext.
type opener struct {
	aead       cipher.AEAD
	r          io.Reader
	ad, lastAD []byte
	chunk      int64
	count      int64 // chunks in the payload
	lastSealed int64 // sealed size of the last chunk
	i          int64 // next chunk to read
	buf, plain []byte
	nonce      [12]byte
}

func newOpener(r io.Reader, aead cipher.AEAD, h *header, hdr []byte) (*opener, error) {
	count, last, err := chunkLayout(h.payloadSize, int64(h.chunkSize))
	if err != nil {
		return nil, err
	}
	return &opener{
		aead:       aead,
		r:          r,
		ad:         hdr[:headerFixedLen],
		lastAD:     hdr[:headerSealedLen],
		chunk:      int64(h.chunkSize),
		count:      count,
		lastSealed: last,
	}, nil
}

func (o *opener) Read(p []byte) (int, error) {
	for len(o.plain) == 0 {
		if o.i == o.count {
			return 0, io.EOF
		}
		if err := o.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, o.plain)
	o.plain = o.plain[n:]
	return n, nil
}

func (o *opener) next() error {
	last := o.i == o.count-1
	size, ad := o.chunk+gcmTagSize, o.ad
	if last {
		size, ad = o.lastSealed, o.lastAD
	}
	if int64(cap(o.buf)) < size {
		o.buf = make([]byte, size)
	}
	b := o.buf[:size]
	if _, err := io.ReadFull(o.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	plain, err := o.aead.Open(b[:0], chunkNonce(&o.nonce, uint64(o.i), last), b, ad)
	if err != nil {
		return corruptf("authentication failed at chunk %d of %d: wrong key or corrupted data (AES-GCM cannot tell the two apart)", o.i+1, o.count)
	}
	o.plain = plain
	o.i++
	return nil
}
