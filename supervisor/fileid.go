package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// FileID identifies a file's contents: the first 16 hex digits of its SHA-256. Builds are told apart by it.
func FileID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// fileIDCache remembers a file's ID by its inode and modification time, so that a reload does not hash an
// unchanged binary again.
type fileIDCache struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	id       string
}

// differs reports whether the file at path has contents other than id.
func (c *fileIDCache) differs(path, id string) (bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("worker binary: %w", err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if c.id == "" || c.dev != sys.Dev || c.ino != sys.Ino || c.size != st.Size() || !c.mtime.Equal(st.ModTime()) {
		got, err := FileID(path)
		if err != nil {
			return false, fmt.Errorf("worker binary: %w", err)
		}
		*c = fileIDCache{dev: sys.Dev, ino: sys.Ino, size: st.Size(), mtime: st.ModTime(), id: got}
	}
	return c.id != id, nil
}
