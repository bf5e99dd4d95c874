package handoff

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sampleMessages is one of each message, the seed of FuzzDecode and the round-trip test.
func sampleMessages() []Message {
	return []Message{
		Hello{Protocol: ProtocolName, Version: Version{1, 0}, Role: RoleSupervisor, Generation: 3, Build: "v0.4.0 go1.26.8", PID: 4242},
		Hello{Protocol: ProtocolName, Version: Version{2, 9}, Role: RoleWorker, Generation: 1<<64 - 1, PID: 1},
		fileNames{"region", "api:tcp:127.0.0.1:8080", "api:unix:/run/announcementd/api.sock"},
		fileNames{},
		Ready{RegionVersion: 42, Healthy: true, Report: json.RawMessage(`{"records":3,"free":[1,2]}`)},
		Ready{RegionVersion: 7, Reason: "region: mincore: 3 pages not resident"},
		Yield{Reason: "reload", Grace: 30 * time.Second},
		Yield{},
		Yielded{LastVersion: 99, Reason: "store: close: i/o error"},
		Standby{Healthy: true, Report: json.RawMessage(`{"build":"x"}`)},
		Standby{Reason: "--token-file: permission denied"},
		Start{Reason: "reload", VersionFloor: 1 << 40},
		Start{},
		Raw{Kind: TypeCustom, Body: []byte(`{"ping":1}`)},
		Raw{Kind: 255, Body: []byte{0, 1, 2}},
	}
}

func TestEncodeDecode(t *testing.T) {
	for _, m := range sampleMessages() {
		frame, err := encodeFrame(m)
		if err != nil {
			t.Fatalf("%#v: %v", m, err)
		}
		nfds := 0
		if n, ok := m.(fileNames); ok {
			nfds = len(n)
		}
		got, err := decodeFrame(frame, nfds)
		if err != nil {
			t.Fatalf("%#v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("encoded %#v, decoded %#v", m, got)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		m    Message
		want error
	}{
		{Hello{Protocol: "x", Version: Version{1, 0}, Role: RoleWorker, PID: 1}, ErrProtocol},
		{Hello{Protocol: ProtocolName, Version: Version{1, 0}, Role: "client", PID: 1}, ErrProtocol},
		{Hello{Protocol: ProtocolName, Role: RoleWorker, PID: 1}, ErrProtocol},
		{Hello{Protocol: ProtocolName, Version: Version{1, 0}, Role: RoleWorker}, ErrProtocol},
		{Ready{Healthy: false}, ErrProtocol},
		{Ready{Healthy: true, Report: json.RawMessage(`{`)}, ErrProtocol},
		{Yield{Grace: -1}, ErrProtocol},
		{Raw{Kind: TypeReady}, ErrProtocol},
		{Raw{Kind: 100}, ErrProtocol},
		{Raw{Kind: TypeCustom, Body: make([]byte, MaxBodySize+1)}, ErrTooLarge},
		{fileNames{"a", "a"}, ErrProtocol},
		{fileNames{strings.Repeat("n", MaxNameLen+1)}, ErrProtocol},
		{fileNames{"\xff"}, ErrProtocol},
		{fileNames(make([]string, MaxFiles+1)), ErrTooLarge},
	} {
		if _, err := encodeFrame(tc.m); !errors.Is(err, tc.want) {
			t.Errorf("%#v: %v, want %v", tc.m, err, tc.want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	hdr := func(n uint32, typ Type, flags byte, nfds uint16) []byte {
		return []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24), byte(typ), flags, byte(nfds), byte(nfds >> 8)}
	}
	frame := func(typ Type, nfds uint16, body string) []byte {
		return append(hdr(uint32(len(body)), typ, 0, nfds), body...)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		nfds  int
		want  error
	}{
		{"short header", []byte{1, 2, 3}, 0, ErrProtocol},
		{"body too large", hdr(MaxBodySize+1, TypeCustom, 0, 0), 0, ErrTooLarge},
		{"huge length", hdr(1<<32-1, TypeCustom, 0, 0), 0, ErrTooLarge},
		{"flags", append(hdr(2, TypeYield, 1, 0), "{}"...), 0, ErrProtocol},
		{"type 0", frame(0, 0, "{}"), 0, ErrProtocol},
		{"reserved type", frame(6, 0, "{}"), 0, ErrProtocol},
		{"too many fds", frame(TypeFiles, MaxFiles+1, "{}"), MaxFiles + 1, ErrTooLarge},
		{"fds on yield", frame(TypeYield, 1, "{}"), 1, ErrFileCount},
		{"body shorter than header says", append(hdr(10, TypeYield, 0, 0), "{}"...), 0, ErrProtocol},
		{"body longer than header says", append(hdr(1, TypeYield, 0, 0), "{}"...), 0, ErrProtocol},
		{"fds differ from header", frame(TypeFiles, 1, `{"names":["a"]}`), 2, ErrFileCount},
		{"names differ from fds", frame(TypeFiles, 2, `{"names":["a"]}`), 2, ErrFileCount},
		{"null body", frame(TypeReady, 0, "null"), 0, ErrProtocol},
		{"array body", frame(TypeYield, 0, "[]"), 0, ErrProtocol},
		{"trailing garbage", frame(TypeYield, 0, "{} {}"), 0, ErrProtocol},
		{"wrong field type", frame(TypeYielded, 0, `{"last_version":"7"}`), 0, ErrProtocol},
		{"unhealthy without reason", frame(TypeReady, 0, `{"healthy":false}`), 0, ErrProtocol},
		{"hello from elsewhere", frame(TypeHello, 0, `{"protocol":"ssh","version":{"major":1},"role":"worker","pid":1}`), 0, ErrProtocol},
	} {
		if m, err := decodeFrame(tc.frame, tc.nfds); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, m, err, tc.want)
		}
	}
	// Unknown fields are a later minor's additions: ignored.
	m, err := decodeFrame(frame(TypeYielded, 0, `{"last_version":7,"new_in_1_1":{"x":1}}`), 0)
	if err != nil || m != (Yielded{LastVersion: 7}) {
		t.Errorf("unknown field: %v, %v", m, err)
	}
}

func TestParseControl(t *testing.T) {
	creds := unix.UnixCredentials(&unix.Ucred{Pid: 4242, Uid: 1000, Gid: 100})
	oob := append(creds, unix.UnixRights(7, 8, 9)...)
	fds, cr, err := parseControl(oob)
	if err != nil || !reflect.DeepEqual(fds, []int{7, 8, 9}) || cr == nil || *cr != (cred{4242, 1000, 100}) {
		t.Fatalf("parseControl: %v, %v, %v", fds, cr, err)
	}
	// Cut anywhere, it never panics and never invents an fd.
	for n := range len(oob) {
		fds, _, _ := parseControl(oob[:n])
		for _, fd := range fds {
			if fd < 7 || fd > 9 {
				t.Fatalf("cut at %d: fd %d", n, fd)
			}
		}
	}
}

// docs/HANDOFF.md is the spec; its type table and its example frame must match the code.
func TestSpecMatchesCode(t *testing.T) {
	spec, err := os.ReadFile("../docs/HANDOFF.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| (\\d+) \\| `(\\w+)` \\|").FindAllSubmatch(spec, -1)
	if len(rows) != int(typeLast) {
		t.Fatalf("HANDOFF.md lists %d message types, want %d", len(rows), typeLast)
	}
	for _, r := range rows {
		n, _ := strconv.Atoi(string(r[1]))
		if got := Type(n).String(); got != strings.ToLower(string(r[2])) {
			t.Errorf("HANDOFF.md: type %d is %s, the code says %s", n, r[2], got)
		}
	}
	for name, v := range map[string]int{"HeaderSize": HeaderSize, "MaxFrameSize": MaxFrameSize, "MaxFiles": MaxFiles, "MaxNameLen": MaxNameLen} {
		if !bytes.Contains(spec, []byte("`"+name+"` = "+strconv.Itoa(v))) {
			t.Errorf("HANDOFF.md does not say `%s` = %d", name, v)
		}
	}
	block := regexp.MustCompile("(?s)<!-- example-frame -->\\s*```\\n(.*?)```").FindSubmatch(spec)
	if block == nil {
		t.Fatal("HANDOFF.md: no example frame")
	}
	var want []byte
	for _, line := range strings.Split(string(block[1]), "\n") {
		if i := strings.Index(line, "  "); i >= 0 {
			line = line[i:] // drop the offset column
		}
		if i := strings.Index(line, "|"); i >= 0 {
			line = line[:i] // and the text column
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(line), ""))
		if err != nil {
			t.Fatalf("HANDOFF.md example: %q: %v", line, err)
		}
		want = append(want, b...)
	}
	got := mustFrame(t, Yield{Reason: "reload", Grace: 5 * time.Second})
	if !bytes.Equal(got, want) {
		t.Errorf("HANDOFF.md example frame differs from the encoder:\nspec:\n%s\ncode:\n%s", hex.Dump(want), hex.Dump(got))
	}
}
