package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildBinaries builds announcementd and announcementctl into a new temporary directory, and the C reader
// (clients/c) in place, for tests that run the real binaries. root is the module's root, relative to the test's
// package (".." for e2e). It returns the directory and a cleanup that removes it.
func BuildBinaries(root, prefix string) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/announcementd", "./cmd/announcementctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build: %v\n%s", err, out)
	}
	if out, err := exec.Command("make", "-s", "-C", filepath.Join(root, "clients", "c"), "all").CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build the C reader: %v\n%s", err, out)
	}
	return dir, cleanup, nil
}
