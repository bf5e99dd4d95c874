package main

import (
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
)

// deltaPublisher is a Publisher handed what changed (changed), or the whole set when it asks (whole), as the
// worker's. (A separate file, so that the same main.go builds against a tree without writer.NewDeltaPublisher for
// a before/after run: there this file returns nil.)
func deltaPublisher(bw *writer.Writer, whole, changed func() []board.Record) *writer.Publisher {
	return writer.NewDeltaPublisher(bw, func(full bool) writer.Delta {
		if full {
			return writer.Delta{Full: true, Records: whole()}
		}
		return writer.Delta{Records: changed()}
	})
}
