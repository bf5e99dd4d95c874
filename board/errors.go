package board

import (
	"errors"
	"fmt"
)

// Code names a class of reader error. The names are part of the format (FORMAT.md §8): the Go, C and Python
// readers report the same code for the same bytes.
type Code string

const (
	CodeIO               Code = "io"
	CodeTruncated        Code = "truncated"
	CodeBadMagic         Code = "bad_magic"
	CodeUnsupportedMajor Code = "unsupported_major"
	CodeBadLayout        Code = "bad_layout"
	CodeNotPublished     Code = "not_published"
	CodeSuperseded       Code = "superseded"
	CodeSnapshotChecksum Code = "snapshot_checksum"
	CodeRecordChecksum   Code = "record_checksum"
	CodeBadRecord        Code = "bad_record"
	CodeBusy             Code = "busy"
)

// Error is a reader error with its code. errors.Is(err, board.ErrSuperseded) and the like match on the code.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Msg }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with the given code.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Sentinels for errors.Is.
var (
	ErrNotPublished = &Error{Code: CodeNotPublished}
	ErrSuperseded   = &Error{Code: CodeSuperseded}
	ErrBusy         = &Error{Code: CodeBusy}
)

// CodeOf returns the code of err, or CodeIO for errors that are not board errors.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeIO
}

// ErrFull is matched (errors.Is) by every refusal of a set larger than a region holds: a *FullError, from the
// writer, the store or the worker alike.
var ErrFull = errors.New("the region is full")

// FullError refuses a set of Count announcements for a region that holds Capacity.
type FullError struct{ Count, Capacity int }

func (e *FullError) Error() string {
	return fmt.Sprintf("the region is full: %d announcements, its capacity is %d", e.Count, e.Capacity)
}

// Is makes errors.Is(err, ErrFull) true.
func (e *FullError) Is(target error) bool { return target == ErrFull }
