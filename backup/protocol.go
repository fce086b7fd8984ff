package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/lifeline-dr/lifeline"
)

// Lifeline runs BASE_BACKUP itself on the replication connection instead of
// through pg_basebackup: one process and one pipe fewer for every byte of
// the backup, and the options pg_basebackup does not expose with -X none:
// WAIT false (the server otherwise polls the archive once a second before it
// ends the backup; Backup waits for the WAL itself) and a manifest whose file
// checksums are CRC-32C, which the server computes at memory speed.

// manifestChecksums is the algorithm the server checksums each file with in
// backup_manifest. CRC-32C: it catches damaged and truncated files as
// SHA-256 would, at a fraction of the walsender's CPU on backup and of ours
// on restore; the stored objects carry their own SHA-256.
const manifestChecksums = "CRC32C"

// streamBuffer is how much of the replication stream one read can take:
// CopyData messages are 32 kB, and reading many per system call keeps the
// reader's share of a core small.
const streamBuffer = 1 << 20

// maxMessage bounds one protocol message: a damaged or hostile length must
// not make us allocate without limit (the server sends 32 kB CopyData).
const maxMessage = 1 << 30

// baseBackupResult is what the server says around the archive.
type baseBackupResult struct {
	startLSN, endLSN lifeline.LSN
	endTimeline      uint32
	notices          []string
}

// baseBackup runs BASE_BACKUP on conn, a replication connection that is
// consumed (closed on return), and passes the tar stream of the data
// directory to write: the server's members, then backup_manifest as one more
// member, then the end-of-archive marker, as pg_basebackup -Ft writes it.
// The slices passed to write are only valid during the call.
func baseBackup(ctx context.Context, conn *pgconn.PgConn, label string, write func([]byte) error) (res baseBackupResult, err error) {
	if err := conn.SyncConn(ctx); err != nil {
		conn.Close(context.Background())
		return res, fmt.Errorf("base backup: %w", err)
	}
	hc, err := conn.Hijack()
	if err != nil {
		conn.Close(context.Background())
		return res, fmt.Errorf("base backup: %w", err)
	}
	nc := hc.Conn
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
	}()

	cmd := fmt.Sprintf("BASE_BACKUP (LABEL %s, CHECKPOINT 'fast', WAIT false, MANIFEST 'yes', MANIFEST_CHECKSUMS '%s', TARGET 'client')",
		sqlQuote(label), manifestChecksums)
	q, err := (&pgproto3.Query{String: cmd}).Encode(nil)
	if err != nil {
		return res, err
	}
	if _, err := nc.Write(q); err != nil {
		return res, fmt.Errorf("send BASE_BACKUP: %w", err)
	}

	s := &msgReader{r: bufio.NewReaderSize(nc, streamBuffer)}
	var (
		results   int // result sets completed: 1 start, 2 tablespaces, 3 end
		archives  int
		inCopy    bool
		inMan     bool
		manifest  []byte
		serverErr error
		// The server ends the archive with the end-of-archive marker; it
		// is held back so that backup_manifest can go before it.
		tail = make([]byte, 0, 2*blockSize)
	)
	emit := func(p []byte) error {
		if len(p) >= cap(tail) {
			if len(tail) > 0 {
				if err := write(tail); err != nil {
					return err
				}
			}
			k := len(p) - cap(tail)
			tail = append(tail[:0], p[k:]...)
			return write(p[:k])
		}
		if over := len(tail) + len(p) - cap(tail); over > 0 {
			if err := write(tail[:over]); err != nil {
				return err
			}
			tail = append(tail[:0], tail[over:]...)
		}
		tail = append(tail, p...)
		return nil
	}
	for {
		typ, body, err := s.next()
		if err != nil {
			return res, fmt.Errorf("read the base backup stream: %w", err)
		}
		switch typ {
		case 'd': // CopyData
			if !inCopy || len(body) == 0 {
				return res, errors.New("base backup: unexpected CopyData")
			}
			switch body[0] {
			case 'd':
				if inMan {
					if len(manifest)+len(body)-1 > maxManifest {
						return res, fmt.Errorf("base backup: backup_manifest is larger than %d bytes", maxManifest)
					}
					manifest = append(manifest, body[1:]...)
				} else if archives == 1 {
					if err := emit(body[1:]); err != nil {
						return res, err
					}
				} else {
					return res, errors.New("base backup: archive data before any archive began")
				}
			case 'n':
				if archives++; archives > 1 {
					return res, errors.New("base backup: the server sends more than one archive: tablespaces other than pg_default and pg_global are not supported")
				}
			case 'm':
				inMan = true
			case 'p': // progress
			default:
				return res, fmt.Errorf("base backup: unknown CopyData type %q (a server newer than this client?)", body[0])
			}
		case 'H': // CopyOutResponse
			inCopy = true
		case 'c': // CopyDone
			inCopy = false
		case 'D': // DataRow
			cols, err := dataRow(body)
			if err != nil {
				return res, fmt.Errorf("base backup: %w", err)
			}
			switch {
			case results == 0 && len(cols) >= 2:
				if res.startLSN, err = lifeline.ParseLSN(string(cols[0])); err != nil {
					return res, fmt.Errorf("base backup: start position %q", cols[0])
				}
			case results == 2 && len(cols) >= 2:
				if res.endLSN, err = lifeline.ParseLSN(string(cols[0])); err != nil {
					return res, fmt.Errorf("base backup: end position %q", cols[0])
				}
				tli, perr := strconv.ParseUint(string(cols[1]), 10, 32)
				if perr != nil {
					return res, fmt.Errorf("base backup: end timeline %q", cols[1])
				}
				res.endTimeline = uint32(tli)
			}
		case 'C': // CommandComplete
			results++
		case 'E':
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				return res, fmt.Errorf("base backup: %w", err)
			}
			serverErr = pgconn.ErrorResponseToPgError(&e)
		case 'N':
			var n pgproto3.NoticeResponse
			if err := n.Decode(body); err == nil {
				res.notices = append(res.notices, n.Message)
			}
		case 'Z': // ReadyForQuery
			if serverErr != nil {
				return res, fmt.Errorf("BASE_BACKUP: %w", serverErr)
			}
			if archives != 1 || manifest == nil || results < 3 || res.endLSN == 0 {
				return res, fmt.Errorf("base backup: the server ended the backup early (%d archives, manifest %v, %d results)", archives, manifest != nil, results)
			}
			if len(tail) != cap(tail) || !allZero(tail) {
				return res, errors.New("base backup: the archive does not end with an end-of-archive marker")
			}
			return res, write(manifestMember(manifest))
		case 'T', 'S', 'K', 'G', 'W', 'A': // row description, parameters, copy in/both, notifications: nothing to use
		default:
			return res, fmt.Errorf("base backup: unexpected message type %q", typ)
		}
	}
}

// manifestMember is backup_manifest as a tar member followed by the
// end-of-archive marker (the server sends neither).
func manifestMember(manifest []byte) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: "backup_manifest", Mode: 0o600, Size: int64(len(manifest)),
		ModTime: time.Now().Truncate(time.Second), Format: tar.FormatUSTAR,
	})
	_, _ = tw.Write(manifest)
	_ = tw.Close()
	return b.Bytes()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// msgReader reads protocol messages from a large buffer. A message body is
// valid until the next call.
type msgReader struct {
	r   *bufio.Reader
	big []byte
}

func (m *msgReader) next() (byte, []byte, error) {
	h, err := m.r.Peek(5)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	typ := h[0]
	n := int64(binary.BigEndian.Uint32(h[1:5])) - 4
	if n < 0 || n > maxMessage {
		return 0, nil, fmt.Errorf("message %q of %d bytes", typ, n)
	}
	_, _ = m.r.Discard(5)
	if int(n) <= m.r.Size() {
		body, err := m.r.Peek(int(n))
		if err != nil {
			return 0, nil, noEOF(err)
		}
		_, _ = m.r.Discard(int(n))
		return typ, body, nil
	}
	if int64(cap(m.big)) < n {
		m.big = make([]byte, n)
	}
	body := m.big[:n]
	if _, err := io.ReadFull(m.r, body); err != nil {
		return 0, nil, noEOF(err)
	}
	return typ, body, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// dataRow splits a DataRow body into its columns (nil for NULL).
func dataRow(b []byte) ([][]byte, error) {
	if len(b) < 2 {
		return nil, errors.New("short DataRow")
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	cols := make([][]byte, 0, n)
	for range n {
		if len(b) < 4 {
			return nil, errors.New("short DataRow")
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l < 0 {
			cols = append(cols, nil)
			continue
		}
		if int(l) > len(b) {
			return nil, errors.New("short DataRow")
		}
		cols = append(cols, b[:l])
		b = b[l:]
	}
	return cols, nil
}

// sqlQuote quotes a string literal for a replication command.
func sqlQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
