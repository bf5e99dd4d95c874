package main

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
)

// A turn that cannot start returns its error (which the worker logs and answers Start with), having released what
// it took; it once panicked on a nil turn in its clean-up instead.
func TestTurnStartFailureReturnsItsError(t *testing.T) {
	dir := t.TempDir()
	notADir := filepath.Join(dir, "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e := &generation{c: config{stateDir: notADir}, log: zap.NewNop()}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("start panicked instead of returning its error: %v", r)
		}
	}()
	if _, err := e.start(0); err == nil {
		t.Fatal("start succeeded with a state dir that is a file")
	}
}
