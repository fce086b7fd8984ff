package objstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zstd"
)

// maxWindow bounds the zstd window a reader accepts, and so the memory a
// hostile or corrupted frame can make it allocate. Writers use at most 8 MiB.
const maxWindow = 16 << 20

// payloadReader returns exactly n bytes of r and reports a shorter r as a
// truncated object.
type payloadReader struct {
	r         io.Reader
	declared  int64
	remaining int64
}

func newPayloadReader(r io.Reader, n int64) *payloadReader {
	return &payloadReader{r: r, declared: n, remaining: n}
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.remaining {
		b = b[:p.remaining]
	}
	n, err := p.r.Read(b)
	p.remaining -= int64(n)
	if errors.Is(err, io.EOF) {
		if p.remaining > 0 {
			return n, p.truncated()
		}
		err = nil
	}
	return n, err
}

func (p *payloadReader) truncated() error {
	return corruptf("truncated: payload is %d bytes, header declares %d", p.declared-p.remaining, p.declared)
}

// finish checks that the whole payload was consumed and that nothing follows it.
func (p *payloadReader) finish() error {
	if p.remaining > 0 {
		return corruptf("%d payload bytes left unread after the end of the data", p.remaining)
	}
	var one [1]byte
	n, err := io.ReadFull(p.r, one[:])
	switch {
	case n > 0:
		return corruptf("unexpected data after the %d-byte payload", p.declared)
	case errors.Is(err, io.EOF):
		return nil
	default:
		return err
	}
}

// errRecorder remembers the last error, other than io.EOF, that a reader
// returned to the zstd decoder, so that an I/O or authentication error below
// the decoder is not mistaken for a decompression error.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}

// objectReader streams the plaintext of one object and verifies it: chunk
// authentication as it goes, the plaintext size and SHA-256 at the end.
type objectReader struct {
	op, key string
	hdr     header
	closer  io.Closer
	payload *payloadReader
	below   *errRecorder // what the decompressor reads
	plain   io.Reader
	zd      *zstd.Decoder
	sum     hash.Hash
	n       int64
	err     error
}

var _ io.ReadCloser = (*objectReader)(nil)

// newObjectReader sets up the decoding of the payload that follows hdr in r.
// Errors are wrapped with op and key.
func (s *Store) newObjectReader(op, key string, h header, hb []byte, r io.Reader) (*objectReader, error) {
	o := &objectReader{op: op, key: key, hdr: h, sum: sha256.New()}
	o.payload = newPayloadReader(r, h.payloadSize)
	var stream io.Reader = o.payload
	if h.encrypted() {
		if err := s.checkKey(h); err != nil {
			return nil, o.wrap(err)
		}
		aead, err := objectAEAD(s.key, h.salt)
		if err != nil {
			return nil, o.wrap(err)
		}
		op, err := newOpener(o.payload, aead, &h, hb)
		if err != nil {
			return nil, o.wrap(err)
		}
		stream = op
	}
	o.below = &errRecorder{r: stream}
	o.plain = o.below
	if h.compressed() {
		zd, err := zstd.NewReader(o.below,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(maxWindow),
			zstd.WithDecoderMaxMemory(maxWindow))
		if err != nil {
			return nil, o.wrap(o.classify(err))
		}
		o.zd, o.plain = zd, zd
	}
	return o, nil
}

// checkKey reports whether the store can decrypt an object with header h.
func (s *Store) checkKey(h header) error {
	switch {
	case s.key == nil:
		return fmt.Errorf("%w: the object is encrypted and the store has no key (set Options.Key)", ErrWrongKey)
	case s.keyID != h.keyID:
		return fmt.Errorf("%w: the object was encrypted with key id %x, the store's key has id %x", ErrWrongKey, h.keyID, s.keyID)
	}
	return nil
}

func (o *objectReader) Read(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.plain.Read(p)
	if n > 0 {
		if o.n+int64(n) > o.hdr.size {
			return 0, o.fail(corruptf("plaintext is longer than the %d bytes the header declares", o.hdr.size))
		}
		o.sum.Write(p[:n])
		o.n += int64(n)
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		if err := o.finish(); err != nil {
			return n, o.fail(err)
		}
		o.err = io.EOF
		return n, io.EOF
	default:
		return n, o.fail(o.classify(err))
	}
}

// classify tells an error from below the decompressor (returned as it is)
// from a decompression error (corruption).
func (o *objectReader) classify(err error) error {
	if o.below.err != nil {
		return o.below.err
	}
	if o.zd != nil {
		return corruptf("zstd: %v", err)
	}
	return err
}

// finish runs the end-of-object checks.
func (o *objectReader) finish() error {
	if o.below.err != nil {
		return o.below.err
	}
	if o.zd != nil {
		// The decompressor stops at its input's EOF, which for an encrypted
		// object means after the authenticated last chunk; make sure of it.
		var one [1]byte
		if n, err := io.ReadFull(o.below, one[:]); n > 0 {
			return corruptf("data after the end of the compressed stream")
		} else if !errors.Is(err, io.EOF) {
			return err
		}
	}
	if err := o.payload.finish(); err != nil {
		return err
	}
	if o.n != o.hdr.size {
		return corruptf("size mismatch: plaintext is %d bytes, header declares %d", o.n, o.hdr.size)
	}
	if got := o.sum.Sum(nil); string(got) != string(o.hdr.sha256[:]) {
		return corruptf("checksum mismatch: plaintext SHA-256 is %s, header declares %s", hex.EncodeToString(got), hex.EncodeToString(o.hdr.sha256[:]))
	}
	return nil
}

func (o *objectReader) fail(err error) error {
	o.err = o.wrap(err)
	return o.err
}

func (o *objectReader) wrap(err error) error { return fmt.Errorf("%s %s: %w", o.op, o.key, err) }

// Close releases the decoder and the underlying object reader.
func (o *objectReader) Close() error {
	if o.zd != nil {
		o.zd.Close()
		o.zd = nil
	}
	if o.closer != nil {
		err := o.closer.Close()
		o.closer = nil
		return err
	}
	return nil
}
