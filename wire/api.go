package wire

import "time"

// Announcement is how the API shows an announcement.
type Announcement struct {
	ID          uint64    `json:"id"`
	Content     string    `json:"content"`
	Priority    int32     `json:"priority"`
	EffectiveAt time.Time `json:"effective_at"`
	// ExpiresAt is absent when the announcement never expires.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Visible says whether the board shows it now: from EffectiveAt until ExpiresAt.
	Visible bool `json:"visible"`
}

// PutRequest is the body of PUT /v1/announcements/{id}, and each element of a batch's put list.
type PutRequest struct {
	// ID is required in a batch; in a PUT the id is in the path, and the body may repeat it (0 is the same as
	// leaving it out).
	ID       uint64 `json:"id"`
	Content  string `json:"content"`
	Priority int32  `json:"priority"`
	// EffectiveAt is when it takes effect; absent means now.
	EffectiveAt *time.Time `json:"effective_at,omitempty"`
	// TTL is a Go duration ("90s", "10m", "24h") from EffectiveAt; absent or "0s" means it never expires.
	TTL string `json:"ttl,omitempty"`
}

// BatchRequest is the body of POST /v1/batch: all or nothing, one store transaction, one board version. Both
// lists are optional (null is the same as empty).
type BatchRequest struct {
	Put    []PutRequest `json:"put"`
	Delete []uint64     `json:"delete"`
}

// AnnouncementResponse answers PUT and GET /v1/announcements/{id}.
type AnnouncementResponse struct {
	Version      uint64       `json:"version"` // the board's version: for a PUT, the first that shows it
	Announcement Announcement `json:"announcement"`
}

// DeleteResponse answers DELETE /v1/announcements/{id}.
type DeleteResponse struct {
	Version uint64 `json:"version"`
	Deleted uint64 `json:"deleted"` // the id
}

// ListResponse answers GET /v1/announcements.
type ListResponse struct {
	Version       uint64         `json:"version"`
	Announcements []Announcement `json:"announcements"` // sorted by id, visible and scheduled alike; never null
}

// BatchResponse answers POST /v1/batch.
type BatchResponse struct {
	Version uint64   `json:"version"`
	Put     int      `json:"put"`     // how many announcements were put
	Deleted []uint64 `json:"deleted"` // the ids of the delete list that existed; never null
}

// ReloadAccepted answers POST /v1/reload on the control socket (without wait): the reload runs in the background.
type ReloadAccepted struct {
	Accepted bool `json:"accepted"` // always true
}

// StopAccepted answers POST /v1/stop on the control socket: the supervisor stops as on SIGTERM; PID is the process
// to wait for (it exits once the serving generation has finished its requests).
type StopAccepted struct {
	Accepted bool `json:"accepted"` // always true
	PID      int  `json:"pid"`
}
