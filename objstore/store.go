package objstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	// Drivers registered on blob.DefaultMux. gs:// and azblob:// are left
	// out on purpose: their SDKs double the size of the binary. A program
	// that needs them blank-imports gocloud.dev/blob/gcsblob or
	// gocloud.dev/blob/azureblob, and Open then accepts their URLs.
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"
)

// Sentinel errors. Every error of the package names the operation and the
// object key, and wraps one of these where one applies.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrConflict: PutIfAbsent found an object with other content under the key.
	ErrConflict = errors.New("object exists with different content")
	// ErrCorrupt: the stored bytes are not a valid object: bad magic,
	// unsupported version, a damaged header, a chunk that fails
	// authentication, a truncated payload, a size or checksum mismatch.
	ErrCorrupt = errors.New("corrupt object")
	// ErrWrongKey: the object is encrypted with a key the store does not
	// have (or the store has no key). Detected from the key id in the header,
	// before any decryption.
	ErrWrongKey = errors.New("wrong encryption key")
)

// Defaults.
const (
	// DefaultCompressionLevel is zstd's level 3: about as fast as the disk
	// and network it feeds, with most of the ratio of the higher levels on
	// WAL and table pages.
	DefaultCompressionLevel = 3
	// spoolMemory is how much of an encoded payload Put keeps in memory
	// before spilling to a temporary file: a compressed 16 MiB WAL segment
	// usually fits, a base-backup file usually does not.
	spoolMemory = 8 << 20
)

// Options configure a Store.
type Options struct {
	// Key enables encryption: 32 bytes for AES-256-GCM (see KeyFromSecret).
	// Objects are written encrypted when it is set and read with it; nil
	// writes plaintext objects and cannot read encrypted ones.
	Key []byte
	// CompressionLevel is the zstd level, 1 (fastest) to 22 (smallest);
	// klauspost/compress maps it to its four speeds (1, 2-6, 7-10, 11-22).
	// 0 means DefaultCompressionLevel; a negative value stores payloads
	// uncompressed (for data that is already compressed).
	CompressionLevel int
	// TempDir holds the spool files of large Puts; "" means os.TempDir().
	// It needs room for the compressed size of the largest object.
	TempDir string
}

// Info describes a stored object, from its header.
type Info struct {
	Key        string
	Size       int64  // plaintext bytes
	StoredSize int64  // bytes in the bucket: header + payload
	SHA256     string // hex SHA-256 of the plaintext
	Compressed bool
	Encrypted  bool
	ModTime    time.Time // when the object was written, as the bucket says; zero from Put
}

// Entry is one object as List sees it, without reading its header.
type Entry struct {
	Key        string
	StoredSize int64
	ModTime    time.Time
}

// Store is a repository of objects in one bucket (and prefix). It is safe for
// concurrent use.
type Store struct {
	url    string
	scheme string
	bucket *blob.Bucket
	key    []byte
	keyID  [keyIDSize]byte
	level  zstd.EncoderLevel
	raw    bool // store uncompressed
	tmp    string
	chunk  int
	file   *fileRepo // file:// only
}

// Open opens the repository at rawURL:
//
//   - file:///abs/dir or file://./rel/dir: a directory, created if missing.
//     Writes go to a temporary file next to the target and are renamed into
//     place, so they are atomic even when /tmp is another file system, and
//     no sidecar attribute files are written (metadata=skip).
//   - s3://bucket/prefix?region=…: Amazon S3 or any S3-compatible store, with
//     the query parameters of gocloud.dev/blob/s3blob and gocloud.dev/aws,
//     e.g. endpoint=http://127.0.0.1:9000&use_path_style=true&region=us-east-1
//     (anonymous=true to skip signing; credentials otherwise come from the
//     usual AWS environment and files). A path after the bucket is a key
//     prefix, as if given as ?prefix=prefix/.
//   - mem://: an in-memory bucket, for tests.
//
// Open checks that the bucket is reachable.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	redacted := u.Redacted()
	if len(opts.Key) != 0 && len(opts.Key) != KeySize {
		return nil, fmt.Errorf("open %s: encryption key is %d bytes, want %d", redacted, len(opts.Key), KeySize)
	}
	if err := normalizeURL(u); err != nil {
		return nil, fmt.Errorf("open %s: %w", redacted, err)
	}
	if u.Scheme == "file" {
		if err := makeFileParents(u); err != nil {
			return nil, fmt.Errorf("open %s: %w", redacted, err)
		}
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", redacted, err)
	}
	ok, err := b.IsAccessible(ctx)
	if err == nil && !ok {
		err = errors.New("bucket does not exist")
	}
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("open %s: %w", redacted, err)
	}
	s := &Store{url: redacted, scheme: u.Scheme, bucket: b, tmp: opts.TempDir, chunk: defaultChunk}
	if u.Scheme == "file" {
		if s.file, err = openFileRepo(u); err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("open %s: %w", redacted, err)
		}
	}
	switch level := opts.CompressionLevel; {
	case level < 0:
		s.raw = true
	case level == 0:
		s.level = zstd.EncoderLevelFromZstd(DefaultCompressionLevel)
	default:
		s.level = zstd.EncoderLevelFromZstd(level)
	}
	if len(opts.Key) != 0 {
		s.key = append([]byte(nil), opts.Key...)
		s.keyID = keyID(s.key)
	}
	return s, nil
}

// normalizeURL applies the defaults Open documents and rejects URLs that
// gocloud would silently misread.
func normalizeURL(u *url.URL) error {
	q := u.Query()
	switch u.Scheme {
	case "file":
		// gocloud ignores any host but ".", so file://backups/x would write
		// to /x: refuse it rather than back up to the wrong place.
		if h := u.Host; h != "" && h != "." && h != "localhost" {
			return fmt.Errorf("file URL host %q: use file:///absolute/path or file://./relative/path", h)
		}
		for k, v := range map[string]string{"create_dir": "true", "no_tmp_dir": "true", "metadata": "skip", "dir_file_mode": "0700"} {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
	case "s3", "gs", "azblob":
		// gocloud takes the bucket from the host and ignores the path.
		if p := strings.Trim(u.Path, "/"); p != "" {
			if q.Has("prefix") {
				return errors.New("give the key prefix either as the URL path or as ?prefix=, not both")
			}
			q.Set("prefix", p+"/")
			u.Path = ""
		}
	}
	u.RawQuery = q.Encode()
	return nil
}

// String returns the repository URL (with any password redacted).
func (s *Store) String() string { return s.url }

// Close releases the bucket.
func (s *Store) Close() error { return s.bucket.Close() }

// Put stores the content of r under key, replacing any object there. It
// streams: r is compressed, encrypted and spooled (memory, then a temporary
// file) while its size and SHA-256 are computed, then uploaded with the
// header in front. The object appears whole or not at all: if r fails or ctx
// is cancelled, nothing is written.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	e, err := s.encode(ctx, key, r)
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer e.close()
	if err := s.upload(ctx, key, e, false); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	return e.info(key), nil
}

// PutIfAbsent is Put for content-addressed, write-once objects such as WAL
// segments. If key already holds an object with the same plaintext (size and
// SHA-256), it returns that object's Info and writes nothing: a re-push after
// a crash succeeds. If key holds other content, or an object whose header is
// unreadable, it returns an error (wrapping ErrConflict or ErrCorrupt) and
// writes nothing. A concurrent writer is caught by a conditional create
// (If-None-Match on S3) where the backend supports one.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) (Info, error) {
	e, err := s.encode(ctx, key, r)
	if err != nil {
		return Info{}, fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	defer e.close()
	info, err := s.sameOrConflict(ctx, key, e)
	switch {
	case err == nil:
		return info, nil
	case errors.Is(err, errTorn):
		// What a crash left of this very content: the intact copy
		// replaces it, rather than blocking the archive for good.
		if err := s.upload(ctx, key, e, false); err != nil {
			return Info{}, fmt.Errorf("put-if-absent %s: replace a torn object: %w", key, err)
		}
		return e.info(key), nil
	case !errors.Is(err, ErrNotFound):
		return Info{}, err
	}
	err = s.upload(ctx, key, e, true)
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		// Lost a race with another writer: judge what it wrote.
		return s.sameOrConflict(ctx, key, e)
	}
	if err != nil {
		return Info{}, fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	return e.info(key), nil
}

// sameOrConflict compares the object at key with e. It returns an error
// wrapping ErrNotFound when there is no object, and one wrapping errTorn
// when the object is what a crash left of e's content (or of no readable
// content at all).
func (s *Store) sameOrConflict(ctx context.Context, key string, e *encoded) (Info, error) {
	got, err := s.Stat(ctx, key)
	if errors.Is(err, ErrCorrupt) {
		err = s.classifyDamaged(ctx, key, e.hdr, err)
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, errTorn) {
			return Info{}, err
		}
		return Info{}, fmt.Errorf("put-if-absent %s: existing object: %w", key, err)
	}
	want := e.info(key)
	if got.SHA256 != want.SHA256 || got.Size != want.Size {
		return Info{}, fmt.Errorf("put-if-absent %s: %w: stored %d bytes with SHA-256 %s, new %d bytes with SHA-256 %s",
			key, ErrConflict, got.Size, got.SHA256, want.Size, want.SHA256)
	}
	if err := s.verifyStored(ctx, key); err != nil {
		if errors.Is(err, errTorn) {
			return Info{}, err
		}
		return Info{}, fmt.Errorf("put-if-absent %s: existing object: %w", key, err)
	}
	return got, nil
}

// encoded is an object ready for upload: its header and spooled payload.
type encoded struct {
	hdr   header
	hb    []byte
	spool *spool
}

func (e *encoded) close() { e.spool.close() }

func (e *encoded) info(key string) Info {
	return infoFrom(key, e.hdr)
}

func infoFrom(key string, h header) Info {
	return Info{
		Key:        key,
		Size:       h.size,
		StoredSize: h.storedSize(),
		SHA256:     hex.EncodeToString(h.sha256[:]),
		Compressed: h.compressed(),
		Encrypted:  h.encrypted(),
	}
}

// encode reads r to the end into a spool: compressed, then encrypted.
func (s *Store) encode(ctx context.Context, key string, r io.Reader) (_ *encoded, err error) {
	if key == "" {
		return nil, errors.New("empty key")
	}
	sp := newSpool(s.tmp, spoolMemory)
	defer func() {
		if err != nil {
			sp.close()
		}
	}()

	var h header
	if !s.raw {
		h.compression = compressionZstd
	}
	var w io.Writer = sp
	var seal *sealer
	if s.key != nil {
		h.cipher = cipherAESGCMv1
		h.chunkSize = uint32(s.chunk)
		h.keyID = s.keyID
		if _, err := rand.Read(h.salt[:]); err != nil {
			return nil, err
		}
		aead, err := objectAEAD(s.key, h.salt)
		if err != nil {
			return nil, err
		}
		fixed := h.marshal()[:headerFixedLen]
		seal = newSealer(sp, aead, s.chunk, fixed)
		w = seal
	}

	sum := sha256.New()
	src := io.TeeReader(ctxReader{ctx, r}, sum)
	var n int64
	if s.raw {
		n, err = io.CopyBuffer(w, src, make([]byte, 256<<10))
	} else {
		zw, zerr := zstd.NewWriter(w, zstd.WithEncoderLevel(s.level))
		if zerr != nil {
			return nil, zerr
		}
		n, err = zw.ReadFrom(src)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		// After an error Close returns without waiting for the encoder's
		// goroutines, which may still be writing to w; Reset waits for them,
		// so nothing touches the spool once encode returns.
		zw.Reset(io.Discard)
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	h.size = n
	copy(h.sha256[:], sum.Sum(nil))
	h.payloadSize = sp.size()
	if seal != nil {
		h.payloadSize += seal.pendingSealed()
		hb := h.marshal()
		if err := seal.finish(hb[:headerSealedLen]); err != nil {
			return nil, err
		}
		if sp.size() != h.payloadSize {
			return nil, fmt.Errorf("internal error: payload is %d bytes, expected %d", sp.size(), h.payloadSize)
		}
		return &encoded{hdr: h, hb: hb, spool: sp}, nil
	}
	return &encoded{hdr: h, hb: h.marshal(), spool: sp}, nil
}

// ctxReader stops reading once ctx is done, so that a Put of a slow or
// endless reader can be cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// upload writes header and payload as one object. gocloud commits an object
// only when Close succeeds with the writer's context still live; every error
// path cancels that context first, so a failed upload leaves nothing.
func (s *Store) upload(ctx context.Context, key string, e *encoded, ifNotExist bool) (err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, commit, err := s.newWriter(wctx, key, e.hdr.storedSize(), ifNotExist)
	if err != nil {
		return mapErr(err)
	}
	payload, err := e.spool.reader()
	if err == nil {
		_, err = w.Write(e.hb)
	}
	if err == nil {
		_, err = io.Copy(w, payload)
	}
	if err != nil {
		cancel()
		_ = w.Close()
		return mapErr(err)
	}
	return mapErr(commit())
}

// newWriter opens a writer for key; commit closes it, which makes the
// object appear (durably, on file://). Cancelling ctx before commit
// abandons the write.
func (s *Store) newWriter(ctx context.Context, key string, size int64, ifNotExist bool) (*blob.Writer, func() error, error) {
	opts := &blob.WriterOptions{
		ContentType:                 "application/octet-stream",
		DisableContentTypeDetection: true,
		IfNotExist:                  ifNotExist,
		BufferSize:                  partSize(size),
	}
	if s.file == nil {
		w, err := s.bucket.NewWriter(ctx, key, opts)
		if err != nil {
			return nil, nil, err
		}
		return w, w.Close, nil
	}
	var tmp *os.File
	created := s.file.missingDirs(key)
	opts.BeforeWrite = s.file.prepare(created, &tmp)
	w, err := s.bucket.NewWriter(ctx, key, opts)
	if err != nil {
		return nil, nil, err
	}
	return w, func() error { return s.file.commit(w, tmp, created, ifNotExist) }, nil
}

// Get returns the plaintext of the object at key. Reads stream: chunks are
// authenticated before their bytes are returned, and the plaintext size and
// SHA-256 are checked when the end is reached. Corruption anywhere surfaces as
// a Read error wrapping ErrCorrupt, before io.EOF: a caller must not use the
// data until Read has returned io.EOF (write to a temporary file, rename
// after). The caller closes the reader.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, _, err := s.GetInfo(ctx, key)
	return rc, err
}

// GetInfo is Get that also returns what the object's header declares. Its
// Size and SHA256 are what Read checks the plaintext against at the end,
// so a caller that expects a given content can compare them first instead
// of hashing the plaintext a second time.
func (s *Store) GetInfo(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	br, err := s.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return nil, Info{}, fmt.Errorf("get %s: %w", key, mapErr(err))
	}
	r := bufio.NewReaderSize(br, 64<<10)
	h, hb, err := readStoredHeader(r, br.Size())
	if err != nil {
		_ = br.Close()
		return nil, Info{}, fmt.Errorf("get %s: %w", key, err)
	}
	o, err := s.newObjectReader("get", key, h, hb, r)
	if err != nil {
		_ = br.Close()
		return nil, Info{}, err
	}
	o.closer = br
	info := infoFrom(key, h)
	info.ModTime = br.ModTime()
	return o, info, nil
}

// readStoredHeader reads the header of an object of stored bytes and checks
// the length of the object against it.
func readStoredHeader(r io.Reader, stored int64) (header, []byte, error) {
	h, hb, err := readHeader(r)
	if err != nil {
		return header{}, nil, err
	}
	if want := h.storedSize(); stored != want {
		if stored < want {
			return header{}, nil, corruptf("truncated: object is %d bytes, header declares %d", stored, want)
		}
		return header{}, nil, corruptf("object is %d bytes, header declares %d: data after the payload", stored, want)
	}
	return h, hb, nil
}

// Stat returns the Info of the object at key, reading only its header. It
// detects a damaged header and a truncated object, not a damaged payload:
// only Get (or Copy) reads that.
func (s *Store) Stat(ctx context.Context, key string) (Info, error) {
	br, err := s.bucket.NewRangeReader(ctx, key, 0, headerLen, nil)
	if err != nil {
		if gcerrors.Code(err) != gcerrors.NotFound {
			// S3 refuses a range on an object shorter than the range start
			// (an empty object): tell that apart from an I/O error.
			if a, aerr := s.bucket.Attributes(ctx, key); aerr == nil && a.Size < headerLen {
				err = corruptf("truncated: object is %d bytes, shorter than the %d-byte header", a.Size, headerLen)
			}
		}
		return Info{}, fmt.Errorf("stat %s: %w", key, mapErr(err))
	}
	defer br.Close()
	h, _, err := readStoredHeader(br, br.Size())
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	info := infoFrom(key, h)
	info.ModTime = br.ModTime()
	return info, nil
}

// List returns the objects whose keys start with prefix, in key order. It does
// not read headers: call Stat for an object's plaintext size and checksum. On
// an error the iterator yields it once and stops.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
		for {
			obj, err := it.Next(ctx)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(Entry{}, fmt.Errorf("list %q: %w", prefix, mapErr(err)))
				return
			}
			if obj.IsDir || (s.scheme == "file" && isFileblobTemp(obj.Key)) {
				continue
			}
			if !yield(Entry{Key: obj.Key, StoredSize: obj.Size, ModTime: obj.ModTime}, nil) {
				return
			}
		}
	}
}

// isFileblobTemp reports whether key is an upload in progress in a file://
// repository: fileblob writes "<key>.<hex nanoseconds>.tmp" beside the target.
func isFileblobTemp(key string) bool {
	rest, ok := strings.CutSuffix(key, ".tmp")
	if !ok {
		return false
	}
	i := strings.LastIndexByte(rest, '.')
	return i >= 0 && isHex(rest[i+1:])
}

// Delete removes the object at key; a missing object is ErrNotFound.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.bucket.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, mapErr(err))
	}
	return nil
}

// Copy copies the object at key from s to dst byte for byte, without
// re-encoding: the copy stays encrypted with the same key (dst must use the
// same key to read it; Copy refuses a dst whose key has another id). On the
// way it verifies the object as Get does (authentication, size, SHA-256) when
// s can decrypt it, and only its structure (header, length) when s has no key,
// so a copier needs no key. A corrupt source is not copied: the write to dst
// is abandoned, and dst keeps whatever it had under key.
func (s *Store) Copy(ctx context.Context, dst *Store, key string) error {
	br, err := s.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return fmt.Errorf("copy %s: %w", key, mapErr(err))
	}
	defer br.Close()
	r := bufio.NewReaderSize(br, 64<<10)
	h, hb, err := readStoredHeader(r, br.Size())
	if err != nil {
		return fmt.Errorf("copy %s: %w", key, err)
	}
	if h.encrypted() && dst.key != nil && dst.keyID != h.keyID {
		return fmt.Errorf("copy %s: %w: the object was encrypted with key id %x, the destination's key has id %x and could not read the copy",
			key, ErrWrongKey, h.keyID, dst.keyID)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, commit, err := dst.newWriter(wctx, key, br.Size(), false)
	if err != nil {
		return fmt.Errorf("copy %s: %w", key, mapErr(err))
	}
	err = s.copyPayload(key, h, hb, r, w)
	if err != nil {
		cancel()
		_ = w.Close()
		return err
	}
	if err := commit(); err != nil {
		return fmt.Errorf("copy %s: %w", key, mapErr(err))
	}
	return nil
}

// copyPayload writes the header and the payload read from r to w, verifying
// as much as s's key allows.
func (s *Store) copyPayload(key string, h header, hb []byte, r io.Reader, w io.Writer) error {
	if _, err := w.Write(hb); err != nil {
		return fmt.Errorf("copy %s: %w", key, err)
	}
	src := io.TeeReader(r, w)
	if h.encrypted() && s.checkKey(h) != nil {
		p := newPayloadReader(src, h.payloadSize)
		if _, err := io.Copy(io.Discard, p); err != nil {
			return fmt.Errorf("copy %s: %w", key, err)
		}
		if err := p.finish(); err != nil {
			return fmt.Errorf("copy %s: %w", key, err)
		}
		return nil
	}
	o, err := s.newObjectReader("copy", key, h, hb, src)
	if err != nil {
		return err
	}
	defer o.Close()
	_, err = io.Copy(io.Discard, o)
	return err
}

// partSize is the upload part size for an object of n bytes: 0 (the
// driver's default, 5 MiB on S3) unless that would need more than S3's 10,000
// parts (objects over 48 GiB), then the smallest whole MiB that fits.
func partSize(n int64) int {
	const maxParts, defaultPart, mib = 10000, 5 << 20, 1 << 20
	if n <= maxParts*defaultPart {
		return 0
	}
	p := (n + maxParts - 1) / maxParts
	return int((p + mib - 1) / mib * mib)
}

// mapErr turns gocloud's not-found into ErrNotFound.
func mapErr(err error) error {
	if err != nil && gcerrors.Code(err) == gcerrors.NotFound {
		return ErrNotFound
	}
	return err
}
