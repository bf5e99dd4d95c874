package handoff

import "errors"

// Sentinels, for callers that branch on the kind of failure. Every error this package returns wraps at most one of
// them, with the step and (once known) the peer's pid in the message: "handoff: recv files from pid 4242: ...".
var (
	// ErrVersion: the peer speaks a protocol major version we do not. The message says which side to upgrade.
	ErrVersion = errors.New("incompatible handoff protocol version")

	// ErrProtocol: the peer broke the protocol: a malformed header or body, an unexpected message, a call made out
	// of order (e.g. Send before Handshake).
	ErrProtocol = errors.New("handoff protocol violation")

	// ErrTooLarge: a frame over MaxFrameSize, or more than MaxFiles fds, was about to be sent or was announced by the
	// peer.
	ErrTooLarge = errors.New("frame too large")

	// ErrTruncated: the kernel truncated a received message (MSG_CTRUNC: more fds than our control buffer holds, or
	// MSG_TRUNC). The fds that did arrive have been closed.
	ErrTruncated = errors.New("message truncated")

	// ErrFileCount: the fds that arrived with a frame do not match its header or its list of names. Every fd that
	// arrived has been closed.
	ErrFileCount = errors.New("fd count does not match the names")

	// ErrPeer: the peer is not the process the caller expected, has not been checked yet, or a frame came from a
	// process other than the one that said hello.
	ErrPeer = errors.New("handoff peer not verified")
)
