package handoff

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Protocol identification (HANDOFF.md §3). Two peers can talk when their majors are equal; a minor only adds what
// a peer of a lower minor never has to see (new JSON fields, new types sent only to peers that announced them).
const (
	ProtocolName         = "announcementd-handoff"
	ProtocolMajor uint16 = 1
	ProtocolMinor uint16 = 0
)

// Frame limits and the header's fields (HANDOFF.md §2). All integers are little-endian.
const (
	HeaderSize   = 8                         // the fixed frame header
	MaxFrameSize = 64 << 10                  // header + body; a larger frame is never sent and never read
	MaxBodySize  = MaxFrameSize - HeaderSize // the largest body
	MaxFiles     = 64                        // fds in one Files frame; every recvmsg's control buffer holds this many
	MaxNameLen   = 255                       // bytes in one file name

	offBodyLen   = 0 // b[0:4] body length in bytes, uint32, ≤ MaxBodySize
	offType      = 4 // b[4]   message type
	offFlags     = 5 // b[5]   flags; 0 in every 1.x version
	offFileCount = 6 // b[6:8] fds attached to this frame, uint16; 0 unless the type is Files
)

// Type is a message type, b[4] of the frame header.
type Type uint8

// Message types. 8–127 are reserved for later minors of this protocol and are a protocol error when received;
// 128–255 are free for the application and travel as Raw.
const (
	TypeHello   Type = 1 // both directions, first frame on the connection: Hello
	TypeFiles   Type = 2 // named fds, attached with SCM_RIGHTS to this frame: Files
	TypeReady   Type = 3 // worker → supervisor: serving (or not), with a report: Ready
	TypeYield   Type = 4 // supervisor → worker: stop accepting, finish, then say Yielded: Yield
	TypeYielded Type = 5 // worker → supervisor: done; the last region version it published: Yielded
	TypeStandby Type = 6 // worker → supervisor: prepared, waiting for Start (or not, with a reason): Standby
	TypeStart   Type = 7 // supervisor → worker: take the region and the store, and serve: Start
	typeLast         = TypeStart
	TypeCustom  Type = 128 // the first application-defined type: Raw
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeFiles:
		return "files"
	case TypeReady:
		return "ready"
	case TypeYield:
		return "yield"
	case TypeYielded:
		return "yielded"
	case TypeStandby:
		return "standby"
	case TypeStart:
		return "start"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Message is one of Hello, Files, Ready, Yield, Yielded or Raw.
type Message interface {
	Type() Type
	validate() error // the checks a message passes before it is sent and after it is decoded
}

// Version is a protocol version.
type Version struct {
	Major uint16 `json:"major"`
	Minor uint16 `json:"minor"`
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Role says which end of the connection a peer is.
type Role string

const (
	RoleSupervisor Role = "supervisor"
	RoleWorker     Role = "worker"
)

// Hello opens the connection in both directions. Its fields never change meaning or name, in any version, so two
// peers of any versions can always read each other's Hello and say what is wrong.
type Hello struct {
	Protocol   string  `json:"protocol"` // ProtocolName; Handshake sets it
	Version    Version `json:"version"`  // the version the sender speaks; Handshake sets it
	Role       Role    `json:"role"`
	Generation uint64  `json:"generation"` // the worker generation this connection belongs to
	Build      string  `json:"build"`      // free text for operators: version, commit, Go version
	PID        int     `json:"pid"`        // the sender's pid as it sees it; Handshake sets it when zero. Informational: CheckPeer trusts the kernel, not this
}

// Ready is the worker's report that it serves (Healthy) or could not start (not Healthy, with a Reason).
type Ready struct {
	RegionVersion uint64          `json:"region_version"`   // the region version the worker saw or published
	Healthy       bool            `json:"healthy"`          // false: the supervisor should roll back
	Reason        string          `json:"reason,omitempty"` // required when not Healthy
	Report        json.RawMessage `json:"report,omitempty"` // optional, any JSON value, passed through for status output
}

// Yield asks the worker to stop accepting new work, finish what it holds, and answer Yielded.
type Yield struct {
	Reason string        `json:"reason,omitempty"`   // e.g. "reload", "shutdown"
	Grace  time.Duration `json:"grace_ns,omitempty"` // how long the supervisor waits before it kills; 0: unspecified
}

// Yielded is the worker's answer to Yield: it no longer writes the region, and LastVersion is the last version it
// published. Reason is empty when it finished cleanly.
type Yielded struct {
	LastVersion uint64 `json:"last_version"`
	Reason      string `json:"reason,omitempty"`
}

// Standby is a new worker's report that it has checked what it can without writing (its configuration, the
// files it was handed) and waits for Start; not Healthy, with a Reason, when it cannot serve.
type Standby struct {
	Healthy bool            `json:"healthy"`
	Reason  string          `json:"reason,omitempty"` // required when not Healthy
	Report  json.RawMessage `json:"report,omitempty"` // optional, any JSON value, passed through for status output
}

// Start makes a worker in standby, or one that has yielded, the writer: it takes the region and the store and
// serves, then answers Ready. VersionFloor is the last version the previous writer published (0 when unknown);
// the worker publishes above it.
type Start struct {
	Reason       string `json:"reason,omitempty"` // e.g. "first", "reload", "rollback", "restart"
	VersionFloor uint64 `json:"version_floor,omitempty"`
}

// Raw is an application-defined message: Kind ≥ TypeCustom, and a body this package does not interpret (JSON by
// convention).
type Raw struct {
	Kind Type
	Body []byte
}

// fileNames is the decoded body of a Files frame, before its fds are attached.
type fileNames []string

func (Hello) Type() Type     { return TypeHello }
func (Ready) Type() Type     { return TypeReady }
func (Yield) Type() Type     { return TypeYield }
func (Yielded) Type() Type   { return TypeYielded }
func (Standby) Type() Type   { return TypeStandby }
func (Start) Type() Type     { return TypeStart }
func (r Raw) Type() Type     { return r.Kind }
func (fileNames) Type() Type { return TypeFiles }

func (h Hello) validate() error {
	switch {
	case h.Protocol != ProtocolName:
		return fmt.Errorf("%w: the peer does not speak %s (its hello says protocol %q)", ErrProtocol, ProtocolName, h.Protocol)
	case h.Version.Major == 0:
		return fmt.Errorf("%w: hello without a protocol version", ErrProtocol)
	case h.Role != RoleSupervisor && h.Role != RoleWorker:
		return fmt.Errorf("%w: hello with role %q (want %q or %q)", ErrProtocol, h.Role, RoleSupervisor, RoleWorker)
	case h.PID <= 0:
		return fmt.Errorf("%w: hello with pid %d", ErrProtocol, h.PID)
	}
	return nil
}

func (r Ready) validate() error {
	if !r.Healthy && r.Reason == "" {
		return fmt.Errorf("%w: an unhealthy ready must say why (empty reason)", ErrProtocol)
	}
	return nil
}

func (y Yield) validate() error {
	if y.Grace < 0 {
		return fmt.Errorf("%w: yield with a negative grace (%v)", ErrProtocol, y.Grace)
	}
	return nil
}

func (Yielded) validate() error { return nil }

func (s Standby) validate() error {
	if !s.Healthy && s.Reason == "" {
		return fmt.Errorf("%w: an unhealthy standby must say why (empty reason)", ErrProtocol)
	}
	return nil
}

func (Start) validate() error { return nil }

func (r Raw) validate() error {
	if r.Kind < TypeCustom {
		return fmt.Errorf("%w: %v is not an application type (they start at %d)", ErrProtocol, r.Kind, TypeCustom)
	}
	return nil
}

func (n fileNames) validate() error {
	if len(n) > MaxFiles {
		return fmt.Errorf("%w: %d files (at most %d)", ErrTooLarge, len(n), MaxFiles)
	}
	seen := make(map[string]bool, len(n))
	for _, name := range n {
		switch {
		case name == "" || len(name) > MaxNameLen:
			return fmt.Errorf("%w: file name of %d bytes (want 1 to %d)", ErrProtocol, len(name), MaxNameLen)
		case !utf8.ValidString(name):
			return fmt.Errorf("%w: file name %q is not UTF-8", ErrProtocol, name)
		case seen[name]:
			return fmt.Errorf("%w: file name %q appears twice", ErrProtocol, name)
		}
		seen[name] = true
	}
	return nil
}

// filesBody is the JSON body of a Files frame.
type filesBody struct {
	Names []string `json:"names"`
}

// encodeFrame returns the whole frame for m: header, then body.
func encodeFrame(m Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	var body []byte
	var err error
	nfds := 0
	switch m := m.(type) {
	case Raw:
		body = m.Body
	case fileNames:
		body, err = json.Marshal(filesBody{Names: m})
		nfds = len(m)
	default:
		body, err = json.Marshal(m)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: encode %v: %w", ErrProtocol, m.Type(), err)
	}
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("%w: %v body of %d bytes (at most %d)", ErrTooLarge, m.Type(), len(body), MaxBodySize)
	}
	frame := make([]byte, HeaderSize, HeaderSize+len(body))
	binary.LittleEndian.PutUint32(frame[offBodyLen:], uint32(len(body)))
	frame[offType] = byte(m.Type())
	frame[offFlags] = 0
	binary.LittleEndian.PutUint16(frame[offFileCount:], uint16(nfds))
	return append(frame, body...), nil
}

// header is a parsed frame header.
type header struct {
	bodyLen   int
	typ       Type
	fileCount int
}

// parseHeader checks, in this order: the body length, the flags, the type, the fd count.
func parseHeader(b []byte) (header, error) {
	if len(b) < HeaderSize {
		return header{}, fmt.Errorf("%w: header of %d bytes (want %d)", ErrProtocol, len(b), HeaderSize)
	}
	h := header{
		bodyLen:   int(binary.LittleEndian.Uint32(b[offBodyLen:])),
		typ:       Type(b[offType]),
		fileCount: int(binary.LittleEndian.Uint16(b[offFileCount:])),
	}
	switch {
	case h.bodyLen > MaxBodySize:
		return h, fmt.Errorf("%w: the peer announces a %v body of %d bytes (at most %d)", ErrTooLarge, h.typ, h.bodyLen, MaxBodySize)
	case b[offFlags] != 0:
		return h, fmt.Errorf("%w: header flags %#02x (none are defined)", ErrProtocol, b[offFlags])
	case h.typ == 0 || (h.typ > typeLast && h.typ < TypeCustom):
		return h, fmt.Errorf("%w: unknown message %v", ErrProtocol, h.typ)
	case h.fileCount > MaxFiles:
		return h, fmt.Errorf("%w: the peer announces %d fds (at most %d)", ErrTooLarge, h.fileCount, MaxFiles)
	case h.fileCount > 0 && h.typ != TypeFiles:
		return h, fmt.Errorf("%w: %d fds announced with a %v message", ErrFileCount, h.fileCount, h.typ)
	}
	return h, nil
}

// decodeFrame decodes one whole frame that arrived with nfds fds. It is pure: it never sees the fds themselves,
// only their number, so the caller closes them on error.
func decodeFrame(frame []byte, nfds int) (Message, error) {
	h, err := parseHeader(frame)
	if err != nil {
		return nil, err
	}
	body := frame[HeaderSize:]
	if len(body) != h.bodyLen {
		return nil, fmt.Errorf("%w: %v frame with a %d-byte body, header says %d", ErrProtocol, h.typ, len(body), h.bodyLen)
	}
	if nfds != h.fileCount {
		return nil, fmt.Errorf("%w: %d fds arrived with a %v frame that announces %d", ErrFileCount, nfds, h.typ, h.fileCount)
	}
	var m Message
	switch h.typ {
	case TypeHello:
		m, err = decodeJSON[Hello](body)
	case TypeReady:
		m, err = decodeJSON[Ready](body)
	case TypeYield:
		m, err = decodeJSON[Yield](body)
	case TypeYielded:
		m, err = decodeJSON[Yielded](body)
	case TypeStandby:
		m, err = decodeJSON[Standby](body)
	case TypeStart:
		m, err = decodeJSON[Start](body)
	case TypeFiles:
		var fb filesBody
		fb, err = decodeJSON[filesBody](body)
		if err == nil && len(fb.Names) != h.fileCount {
			err = fmt.Errorf("%w: %d names for %d fds", ErrFileCount, len(fb.Names), h.fileCount)
		}
		m = fileNames(fb.Names)
	default: // parseHeader let through only the application range
		m = Raw{Kind: h.typ, Body: bytes.Clone(body)}
	}
	if err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeJSON decodes a body that must be one JSON object. Unknown fields are ignored: a later minor may add them.
func decodeJSON[T any](body []byte) (T, error) {
	var v T
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return v, fmt.Errorf("%w: %T body is not a JSON object", ErrProtocol, v)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("%w: %T body: %w", ErrProtocol, v, err)
	}
	return v, nil
}
