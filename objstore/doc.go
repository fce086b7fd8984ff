// Package objstore stores backup objects (WAL segments, base-backup files,
// manifests) in a bucket reached through gocloud.dev/blob: a directory
// (file://), Amazon S3 or any S3-compatible store (s3://), or memory (mem://,
// for tests).
//
// # Guarantees
//
//   - Streaming in bounded memory. Put reads its input once, compressing,
//     encrypting and spooling it (up to 8 MiB in memory, the rest in a
//     temporary file, unlinked at once), then uploads it. Get streams back
//     one 1 MiB chunk at a time. A 1 GB base-backup file is never held in
//     memory.
//   - Atomic writes. An object appears whole or not at all: the upload starts
//     only after the input was read without error, and gocloud commits it only
//     when its writer is closed with a live context; every failure cancels
//     that context first. file:// writes a temporary file beside the target
//     and renames it; S3 commits on the final PUT or CompleteMultipartUpload.
//   - Durable writes. A file:// Put returns only once the object is on disk:
//     its temporary file is fsynced before the rename, and its directory
//     (with any directory created for it) after, so a power loss cannot
//     truncate an object whose write was reported done. A writer killed before
//     the rename leaves only its temporary file, removed by the next write of
//     the same object.
//   - Private files. file:// objects are created with mode 0600 and
//     directories with 0700; a writer running as root gives what it creates
//     to the owner of the repository's directory, so that PostgreSQL's OS
//     user (archive and restore commands) and the agent share it without
//     anyone else.
//   - Idempotent write-once. PutIfAbsent succeeds without writing when the key
//     already holds the same plaintext (WAL re-push after a crash) and fails
//     with ErrConflict, writing nothing, when it holds other content. What a
//     crash can leave under a name (an object cut short inside its header or
//     all zeros, a cut or damaged copy whose header declares the same size
//     and SHA-256) is replaced by the new, identical content instead of
//     blocking the WAL archive forever; a cut object of other content is
//     still ErrConflict, and other unreadable bytes still ErrCorrupt.
//   - Corruption is detected and named. Get returns an error wrapping
//     ErrCorrupt, naming the key and what is wrong (bad magic, unsupported
//     version, header checksum mismatch, truncation, authentication failure at
//     chunk N, size or SHA-256 mismatch) and never returns unauthenticated
//     plaintext of an encrypted object. For an unencrypted object, bytes are
//     returned as they are decoded and a damage is reported at the latest
//     before io.EOF (by the zstd frame checksum or the SHA-256 check), so
//     callers use the data only after io.EOF. An encrypted object read with
//     another key, or without one, fails with ErrWrongKey before any
//     decryption, thanks to the key id in the header.
//   - Copy between repositories (cross-region) moves the stored bytes as they
//     are, verifying them on the way, so a damaged object is not replicated.
//
// What the format does not hide: the header, readable without the key, holds
// the plaintext size and SHA-256. Someone with read access to the bucket can
// confirm a guess of an object's whole content, and group objects by key id.
// Object keys (WAL segment names, backup labels) are not encrypted either.
//
// # Object format, version 1
//
// Every object is a 92-byte header followed by the payload. Integers are
// big-endian.
//
//	offset size field
//	0      8    magic "LFLOBJ\r\n"
//	8      1    format version: 1
//	9      1    flags: bit 0 compressed, bit 1 encrypted; other bits zero
//	10     1    compression: 0 none, 1 zstd
//	11     1    cipher: 0 none, 1 AES-256-GCM in chunks (below)
//	12     4    chunk size: plaintext bytes per encrypted chunk (1 MiB); 0 if not encrypted
//	16     16   salt: random per object; zero if not encrypted
//	32     8    key id: HMAC-SHA256(key, "lifeline objstore key id v1")[:8]; zero if not encrypted
//	40     8    plaintext size in bytes
//	48     32   SHA-256 of the plaintext
//	80     8    payload size in bytes (the object is exactly 92 + this long)
//	88     4    CRC-32C (Castagnoli) of bytes 0..87
//
// The payload is the plaintext, compressed as one zstd stream (with frame
// checksums, window at most 8 MiB; readers refuse more than 16 MiB) when
// compression is 1, then, when cipher is 1, cut into chunks of chunk-size
// bytes (the last one 0 to chunk-size bytes; an empty stream is one empty
// chunk), each sealed with AES-256-GCM:
//
//	object key = HKDF-SHA256(secret = master key, salt = header salt,
//	                         info = "lifeline objstore aes-256-gcm chunk key v1")
//	nonce      = 11-byte big-endian chunk index || 1 on the last chunk, else 0
//	additional data = header bytes 0..39 for every chunk but the last,
//	                  header bytes 0..87 for the last
//
// so each chunk is chunk-size+16 bytes, the last one 16 to chunk-size+16.
// The per-object key makes counter nonces safe under one master key for any
// number of objects. The last-chunk flag makes truncation at a chunk boundary
// fail authentication, and the additional data binds every header field to
// the payload: the fields known before the payload is written to every chunk,
// the sizes and the SHA-256 (known only at the end) to the last one. The CRC
// catches accidental header damage before any of that, with or without a key.
//
// # Keys
//
// Options.Key is 32 random bytes; KeyFromSecret turns a configured secret (64
// hex characters, base64 of 32 bytes, or a passphrase stretched with scrypt)
// into one. Both sides of a Copy use the same key.
//
// # Drivers
//
// file, s3 and mem are registered. gs:// and azblob:// work once the program
// blank-imports gocloud.dev/blob/gcsblob or gocloud.dev/blob/azureblob (left
// out of this package because their SDKs double the binary's size).
package objstore
