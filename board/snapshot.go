package board

import (
	"errors"
	"fmt"
)

// Snapshot is one consistent copy of the board.
type Snapshot struct {
	Version     uint64
	PublishedAt int64 // unix ns
	Records     []Record
	Attempts    int // reads it took; 1 when the first copy was consistent

	Header      Header
	State       State
	WriterPID   uint32
	Generation  uint64
	HeartbeatNS int64
}

// Dump is the JSON a dump tool prints (FORMAT.md §8). Every reader prints the same keys and values.
type Dump struct {
	Version     uint64   `json:"version"`
	Major       uint16   `json:"major"`
	Minor       uint16   `json:"minor"`
	State       string   `json:"state"`
	RegionSize  uint64   `json:"region_size"`
	Capacity    uint32   `json:"capacity"`
	Stride      uint32   `json:"stride"`
	WriterPID   uint32   `json:"writer_pid"`
	Generation  uint64   `json:"generation"`
	HeartbeatNS int64    `json:"heartbeat_ns"`
	PublishedAt int64    `json:"published_at"`
	Count       int      `json:"count"`
	Records     []Record `json:"records"`
}

// DumpError is the JSON a dump tool prints when it cannot read a snapshot.
type DumpError struct {
	Error   Code   `json:"error"`
	Message string `json:"message"`
}

// Dump returns the snapshot in its dump form.
func (s *Snapshot) Dump() Dump {
	recs := s.Records
	if recs == nil {
		recs = []Record{}
	}
	return Dump{
		Version: s.Version, Major: s.Header.Major, Minor: s.Header.Minor, State: s.State.String(),
		RegionSize: s.Header.RegionSize, Capacity: s.Header.Capacity, Stride: s.Header.Stride,
		WriterPID: s.WriterPID, Generation: s.Generation, HeartbeatNS: s.HeartbeatNS,
		PublishedAt: s.PublishedAt, Count: len(recs), Records: recs,
	}
}

// NewDumpError returns the dump form of a reader error.
func NewDumpError(err error) DumpError {
	var e *Error
	if errors.As(err, &e) {
		return DumpError{Error: e.Code, Message: e.Msg}
	}
	return DumpError{Error: CodeIO, Message: fmt.Sprint(err)}
}
