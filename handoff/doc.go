// Package handoff is the protocol between the announcementd supervisor and its worker generations: a versioned
// handshake, framed messages, and named fds (the region file, the API listeners) passed with SCM_RIGHTS, over the
// two ends of a Unix stream socketpair that the worker inherits. It does no process management and knows nothing of
// announcements. docs/HANDOFF.md specifies the bytes.
//
// # Use
//
// Supervisor, per generation:
//
//	conn, workerEnd, err := handoff.Pair()
//	cmd.ExtraFiles = []*os.File{workerEnd} // fd 3 in the worker
//	err = cmd.Start(); workerEnd.Close()
//	peer, err := conn.Handshake(ctx, handoff.Hello{Role: handoff.RoleSupervisor, Generation: g, Build: build})
//	err = conn.CheckPeer(cmd.Process.Pid, workerUID)
//	err = conn.SendFiles(ctx, handoff.NamedFile{Name: "region", File: region}, handoff.NamedFile{Name: "api", File: ln})
//	msg, err := conn.Recv(ctx) // handoff.Standby: prepared, not yet writing
//	err = conn.Send(ctx, handoff.Start{Reason: "first"})
//	msg, err = conn.Recv(ctx) // handoff.Ready: serving
//
// Worker:
//
//	conn, err := handoff.FileConn(os.NewFile(3, "handoff"))
//	peer, err := conn.Handshake(ctx, handoff.Hello{Role: handoff.RoleWorker, Generation: g, Build: build})
//	err = conn.CheckPeer(os.Getppid(), os.Getuid())
//	files, err := conn.RecvFiles(ctx)
//	ln, err := net.FileListener(files["api"]); files["api"].Close()
//	err = conn.Send(ctx, handoff.Standby{Healthy: true})
//	msg, err := conn.Recv(ctx) // handoff.Start: take the store and the region, and serve
//	err = conn.Send(ctx, handoff.Ready{RegionVersion: v, Healthy: true})
//
// # Invariants
//
//   - Order: Handshake, then CheckPeer, then anything else. Until CheckPeer has passed on this end, no message other
//     than Hello is sent or accepted, and no fd leaves or enters the process: fds that arrive early are closed.
//   - The peer is who the kernel says sent its Hello (SCM_CREDENTIALS; see peer.go for why not SO_PEERCRED), and
//     every later frame must come from that same process.
//   - A Files frame carries exactly one fd per name, attached by the same sendmsg as its first byte. A receiver gets
//     all of them or none: on any error (MSG_CTRUNC, a count that differs from the names or the header, a bad body)
//     every fd that arrived is closed before the call returns.
//   - Every received fd is close-on-exec (MSG_CMSG_CLOEXEC). Every received socket is non-blocking. Sending never
//     calls (*os.File).Fd, so it never switches a shared socket to blocking mode.
//   - No frame exceeds MaxFrameSize in either direction, and no Files frame carries more than MaxFiles fds.
//   - Every blocking call takes a ctx, whose deadline becomes the socket's and whose cancellation interrupts the
//     call. A read that ends before the first byte of a frame leaves the Conn usable; an error after part of a
//     frame moved, or any protocol violation, breaks it for good and later calls return that error.
//   - The frame header and the Hello message never change, so any two versions can tell each other what they speak.
//     Peers of different major versions refuse each other (ErrVersion) with a message that says which to upgrade.
//
// The package logs nothing and holds no global state.
package handoff
