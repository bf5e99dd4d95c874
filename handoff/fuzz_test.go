package handoff

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzDecode feeds the decoder arbitrary frames and fd counts. The decoder is pure (it sees how many fds arrived,
// never the fds), so a bad frame cannot leak one; TestBadFramesCloseTheirFds checks the Conn around it with real fds.
// Properties: no panic; nothing over the limits is accepted; whatever decodes re-encodes, and the re-encoding is
// stable.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		frame, err := encodeFrame(m)
		if err != nil {
			f.Fatal(err)
		}
		nfds := 0
		if n, ok := m.(fileNames); ok {
			nfds = len(n)
		}
		f.Add(frame, uint8(nfds))
	}
	f.Fuzz(func(t *testing.T, frame []byte, nfds uint8) {
		m, err := decodeFrame(frame, int(nfds))
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a message %#v", err, m)
			}
			return
		}
		if len(frame) > MaxFrameSize || int(nfds) > MaxFiles {
			t.Fatalf("accepted a %d-byte frame with %d fds", len(frame), nfds)
		}
		if names, ok := m.(fileNames); ok && len(names) != int(nfds) {
			t.Fatalf("%d names for %d fds", len(names), nfds)
		}
		again, err := encodeFrame(m)
		if err != nil {
			t.Fatalf("decoded %#v does not re-encode: %v", m, err)
		}
		m2, err := decodeFrame(again, int(nfds))
		if err != nil {
			t.Fatalf("re-encoded %#v does not decode: %v", m, err)
		}
		stable, err := encodeFrame(m2)
		if err != nil || !bytes.Equal(stable, again) {
			t.Fatalf("re-encoding is not stable:\n%q\n%q (%v)", again, stable, err)
		}
	})
}

// FuzzParseControl feeds the control-message walker arbitrary bytes: no panic, no negative fd, no more fds than
// the bytes can hold.
func FuzzParseControl(f *testing.F) {
	f.Add(append(unix.UnixCredentials(&unix.Ucred{Pid: 1, Uid: 2, Gid: 3}), unix.UnixRights(3, 4, 5)...))
	f.Add(unix.UnixRights(0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		fds, _, _ := parseControl(oob)
		if len(fds) > len(oob)/4 {
			t.Fatalf("%d fds from %d bytes", len(fds), len(oob))
		}
		for _, fd := range fds {
			if fd < 0 {
				t.Fatalf("fd %d", fd)
			}
		}
	})
}
