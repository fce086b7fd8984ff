package objstore

import "gocloud.dev/blob"

// RawBucket exposes the bucket under a Store, so that tests can read and
// damage stored bytes.
func RawBucket(s *Store) *blob.Bucket { return s.bucket }

// SetChunkSize changes the size of the encrypted chunks a Store writes, so
// that tests and fuzz seeds get many chunks from little data.
func SetChunkSize(s *Store, n int) { s.chunk = n }

// HeaderLen is the length of the version 1 header.
const HeaderLen = headerLen

// SetBeforeRename installs a hook that runs when a file:// object is
// written and synced, just before its rename (nil removes it).
func SetBeforeRename(f func(tmp string)) { beforeRename = f }
