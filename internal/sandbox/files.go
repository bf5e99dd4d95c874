package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Helpers for sandboxed children that take memory away from a region: a small tmpfs of their own, filled up, and
// pages punched out of a file.

// MountTmpfs mounts a tmpfs of size (e.g. "2m") at dir/mnt, which it creates, and returns that path. Only a
// sandboxed child (or root) may mount.
func MountTmpfs(dir, size string) (string, error) {
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return "", err
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size); err != nil {
		return "", fmt.Errorf("mount a tmpfs: %w", err)
	}
	return mnt, nil
}

// Fill writes to a new file at path until its file system is full.
func Fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

// PunchPages frees count pages of the file at path from page first on (its size stays): they are no longer in
// memory, and reading them gives zeros.
func PunchPages(path string, first, count int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	ps := os.Getpagesize()
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(first*ps), int64(count*ps))
}
