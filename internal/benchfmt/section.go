package benchfmt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// WriteSection replaces the section named name in the markdown file at path (between the lines
// "<!-- name:begin -->" and "<!-- name:end -->"), creating the file with a title, or appending the section, when
// there is none; the rest of the file is kept as it is. Each bench command owns one section of docs/BENCHMARKS.md.
func WriteSection(path, name, section string) error {
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		old = []byte("# Benchmarks\n\nWhat the benchmark commands under `bench/` measured, one section each; each section says the " +
			"command that reproduces it and is rewritten by that command between its markers.\n")
		err = nil
	}
	if err != nil {
		return err
	}
	block := begin + "\n" + section + end + "\n"
	var out []byte
	i, j := bytes.Index(old, []byte(begin)), bytes.Index(old, []byte(end))
	switch {
	case i >= 0 && j > i:
		out = append(append(append([]byte{}, old[:i]...), block...), bytes.TrimPrefix(old[j+len(end):], []byte("\n"))...)
	case i < 0 && j < 0:
		out = append(append(bytes.TrimRight(old, "\n"), "\n\n"...), block...)
	default:
		return fmt.Errorf("%s: one of the markers %s / %s is missing or they are out of order: fix it by hand", path, begin, end)
	}
	return os.WriteFile(path, out, 0o644)
}

// WriteRaw writes a bench's raw figures (benchstat lines) to path, creating its directory; an empty path writes
// nothing (the command was not asked for them).
func WriteRaw(path, text string) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// RawHeader is the head of a bench's raw figures, as `go test -bench` prints it so that benchstat groups them
// (goos, goarch, pkg, cpu), and a comment naming the command that wrote them, when, and anything else worth
// keeping beside the figures (note).
func RawHeader(pkg, command string, started time.Time, note string) string {
	h := fmt.Sprintf("goos: %s\ngoarch: %s\npkg: github.com/announcementd/announcementd/%s\ncpu: %s\n# %s, %s",
		runtime.GOOS, runtime.GOARCH, pkg, Machine(), command, started.UTC().Format(time.RFC3339))
	if note != "" {
		h += "; " + note
	}
	return h + "\n"
}

// Rel is path as the markdown file at mdPath refers to it: relative to that file's directory, with slashes.
func Rel(mdPath, path string) string {
	rel, err := filepath.Rel(filepath.Dir(mdPath), path)
	if err != nil {
		rel = path
	}
	return filepath.ToSlash(rel)
}

// Link is a markdown link to path from the file at mdPath ([rel](rel)), or "" when path is "" (the command was not
// asked to write that file).
func Link(mdPath, path string) string {
	if path == "" {
		return ""
	}
	rel := Rel(mdPath, path)
	return "[" + rel + "](" + rel + ")"
}

// RawNote is " Raw figures: LINK." for the raw file at rawPath, or "" without one.
func RawNote(mdPath, rawPath string) string {
	if l := Link(mdPath, rawPath); l != "" {
		return " Raw figures: " + l + "."
	}
	return ""
}
