package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/lifeline-dr/lifeline/objstore"
)

func TestOpen_Errors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, c := range []struct {
		name, url string
		opts      objstore.Options
		want      string
	}{
		{"short key", "file://" + dir, objstore.Options{Key: make([]byte, 16)}, "encryption key is 16 bytes, want 32"},
		{"file host", "file://backups/eu-west", objstore.Options{}, `file URL host "backups"`},
		{"unregistered scheme", "gs://bucket", objstore.Options{}, `no driver registered for "gs"`},
		{"prefix twice", "s3://bucket/a?prefix=b/", objstore.Options{}, "either as the URL path or as ?prefix="},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := objstore.Open(ctx, c.url, c.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", c.url)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("Open(%s) = %v, want %q", c.url, err, c.want)
			}
		})
	}
}

func TestOpen_FileCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups", "eu-west")
	s := open(t, "file://"+dir, objstore.Options{})
	put(t, s, "wal/000000010000000000000001", []byte("segment"))
	if _, err := os.Stat(filepath.Join(dir, "wal", "000000010000000000000001")); err != nil {
		t.Fatalf("object not under the repository directory: %v", err)
	}
	// No sidecar attribute files: one file per object.
	entries, _ := os.ReadDir(filepath.Join(dir, "wal"))
	if len(entries) != 1 {
		t.Errorf("wal/ holds %d files, want 1", len(entries))
	}
}

func TestOpen_FileRelative(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("chdir")
	}
	t.Chdir(t.TempDir())
	s := open(t, "file://./repo/eu", objstore.Options{})
	put(t, s, "k", []byte("v"))
	if _, err := os.Stat(filepath.Join("repo", "eu", "k")); err != nil {
		t.Fatalf("relative repository: %v", err)
	}
}

func TestOpen_S3PathIsPrefix(t *testing.T) {
	repos, _ := s3Repos(t)
	u := repos(t) // s3://repo-1?endpoint=…
	bucketOnly := open(t, u, objstore.Options{})
	prefixed := open(t, strings.Replace(u, "?", "/eu-west/orders?", 1), objstore.Options{})
	put(t, prefixed, "wal/1", []byte("x"))
	var keys []string
	for e, err := range bucketOnly.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, e.Key)
	}
	if want := []string{"eu-west/orders/wal/1"}; !slices.Equal(keys, want) {
		t.Errorf("bucket holds %q, want %q", keys, want)
	}
	if got := mustRead(t, prefixed, "wal/1"); string(got) != "x" {
		t.Errorf("read back %q", got)
	}
}

func TestOpen_S3MissingBucket(t *testing.T) {
	repos, _ := s3Repos(t)
	u := strings.Replace(repos(t), "repo-1", "no-such-bucket", 1)
	_, err := objstore.Open(context.Background(), u, objstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("Open of a missing bucket = %v", err)
	}
}

func TestStore_ListSkipsFileUploadsInProgress(t *testing.T) {
	dir := t.TempDir()
	s := open(t, "file://"+dir, objstore.Options{})
	put(t, s, "wal/000000010000000000000001", []byte("done"))
	// What fileblob leaves beside the target while an upload runs.
	if err := os.WriteFile(filepath.Join(dir, "wal", "000000010000000000000002.18b3f6a2c1d4e5f6.tmp"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	put(t, s, "wal/notes.tmp", []byte("a key that merely ends in .tmp"))
	var keys []string
	for e, err := range s.List(context.Background(), "wal/") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, e.Key)
	}
	if want := []string{"wal/000000010000000000000001", "wal/notes.tmp"}; !slices.Equal(keys, want) {
		t.Errorf("List = %q, want %q", keys, want)
	}
}

func TestStore_CopyFileToS3(t *testing.T) {
	ctx := context.Background()
	repos, _ := s3Repos(t)
	src := open(t, "file://"+t.TempDir(), objstore.Options{Key: keyA})
	dst := open(t, repos(t), objstore.Options{Key: keyA})
	data := pgbenchPages(4 << 20)
	put(t, src, "base/1/16384/16385", data)
	if err := src.Copy(ctx, dst, "base/1/16384/16385"); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if got := mustRead(t, dst, "base/1/16384/16385"); !bytes.Equal(got, data) {
		t.Errorf("copy reads back other content")
	}
}

func TestStore_UseAfterClose(t *testing.T) {
	s, err := objstore.Open(context.Background(), "file://"+t.TempDir(), objstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(context.Background(), "k", bytes.NewReader(nil)); err == nil || errors.Is(err, objstore.ErrCorrupt) {
		t.Errorf("Put after Close = %v", err)
	}
}
