// Package backup is Lifeline's backup engine for PostgreSQL: the WAL archive
// behind archive_command and restore_command, base backups, point-in-time
// restore, retention, cross-region copy and restore verification. It stores
// everything through objstore, so every object is compressed, optionally
// encrypted (AES-256-GCM) and checksummed, and works on file://, s3:// and
// the other gocloud.dev/blob buckets.
//
// # Repository layout
//
// One repository per region; each workload under its own prefix:
//
//	<workload>/wal/<file>                     WAL as PostgreSQL names it: segments
//	                                          (000000010000000000000003), timeline
//	                                          history (00000002.history), backup
//	                                          history (…03.00000028.backup) and
//	                                          .partial files
//	<workload>/backups/<id>/part-00000 …      the base backup's tar stream (as
//	                                          pg_basebackup -Ft writes it), in parts
//	<workload>/backups/<id>/manifest.json     written last: the backup exists
//	                                          exactly when its manifest does
//
// Backup ids are the UTC second the backup started, 20261125T101500Z, so
// they sort by time. manifest.json (Info) records the source node, system
// identifier, PostgreSQL version, WAL segment size, timeline(s), start and
// stop LSN and time, tar size, and each part's size and SHA-256.
//
// # Guarantees
//
//   - WAL is write-once. PushWAL of a name already archived succeeds when
//     the content is the same (a retry) and fails with ErrConflict, naming
//     the object and overwriting nothing, when it differs. A segment whose
//     size or first page header does not match its name is refused.
//   - FetchWAL writes its destination atomically (temporary file, fsync,
//     rename) and only with content that passed every check. It reports a
//     missing file as ErrNotFound only at the end of the archive: a missing
//     segment followed by later segments of the same timeline is ErrWALGap,
//     and FetchExitCode turns that, and a damaged object or a wrong key, into
//     an exit status PostgreSQL treats as fatal. So a server never ends
//     recovery early and promotes a database that silently lacks WAL.
//   - A backup is restorable when it exists. Backup checks backup_manifest's
//     checksum and that it agrees with backup_label, the tar stream, the
//     server's system identifier and version; it waits until every WAL
//     segment from the backup's start to its stop is archived; only then
//     does it write manifest.json. A failed backup leaves no manifest.
//   - Restore is exact or fails. It picks the newest backup that ended at or
//     before the target, checks the archive's listing for a hole between the
//     backup and the target (ErrWALGap), verifies every part (size and
//     SHA-256 against manifest.json, objstore's checks as it is read), and
//     every extracted file against backup_manifest (size and checksum:
//     CRC-32C for backups taken since Lifeline asks the server for it,
//     SHA-256 before); on any failure it clears the directory. Recovery stops at the target inclusively (every transaction
//     committed at or before a time; up to and including the record at an
//     LSN), follows the newest timeline, and promotes. PostgreSQL 15 itself
//     refuses to promote when WAL ends before a time or LSN target
//     ("recovery ended before configured recovery target was reached").
//     A target after the end of the archive (in the future, after the newest
//     segment was archived, or an LSN beyond it) is restored as latest, and
//     RestoreResult.Notes says so. A target before the oldest backup is
//     ErrNoBackup.
//   - Retention never deletes what a kept backup needs. PlanRetention is a
//     pure function: it always keeps the newest backup and, for a window, the
//     newest backup that ended before the window so that a restore to the
//     window's very start works; WAL goes only before the oldest kept
//     backup's start; history files stay.
//   - Cross-region copy (CopyTo) copies stored bytes as they are (verified
//     on the way; a damaged object is not copied), WAL before backups and a
//     backup's parts before its manifest, and never overwrites.
//   - Verify restores into a scratch directory, starts the copy on a
//     loopback address, checks that recovery reached its target (for latest:
//     that it ended no earlier than the newest archived segment), runs
//     amcheck on every B-tree index and counts every table's rows.
//
// # What the integrator must provide
//
//   - archive_command runs `lifeline wal-push … %p` (PushWAL, exit with
//     PushExitCode) and restore_command `lifeline wal-fetch … %f %p`
//     (FetchWAL, exit with FetchExitCode, printing the error to stderr only
//     for a status above 1). Both run as the PostgreSQL OS user, with
//     PostgreSQL's environment: the repository URL, the workload and the
//     encryption key must come from their command line or a file that user
//     can read, and S3 credentials from that user's environment or files
//     (or the URL's parameters).
//   - A file:// repository must be writable by the PostgreSQL OS user under
//     <dir>/<workload>/wal/ (create and chown it when running as root), and
//     readable by it everywhere (restore_command).
//   - Backup needs a role with REPLICATION that may connect from where
//     Backup runs, on PostgreSQL 15 or later; its password is sent over the
//     connection only.
//   - Clocks: StopTime is this machine's clock after the server ended the
//     backup; target times are compared with it and with the bucket's
//     modification times, so keep clocks in sync (NTP).
//
// Not supported: tablespaces other than pg_default and pg_global (the tar
// stream has one tablespace), restoring along a timeline other than the
// newest, and incremental backups.
package backup
