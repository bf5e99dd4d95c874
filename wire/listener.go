package wire

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
)

// Listener returns l with its connections made to answer as JSON Errors the requests that net/http refuses before
// any handler runs, which it answers in plain text itself (net/http server.go, conn.serve):
//
//	431 Request Header Fields Too Large   the header fields are over http.Server.MaxHeaderBytes  headers_too_large
//	400 Bad Request[: why]                a malformed request line, header or Host               bad_request
//	501 Not Implemented                   a Transfer-Encoding other than chunked                  bad_request
//	505 HTTP Version Not Supported        a protocol other than HTTP/1.x                          bad_request
//	417 Expectation Failed                an Expect other than 100-continue (an empty body)       bad_request
//
// net/http writes each of these straight to the connection, in one Write, as a whole response that closes the
// connection, in exactly one form. A connection of Listener replaces such a Write (and nothing else: an answer
// of a handler never has that form, and its body is JSON) with the same status as an Error. Its message is
// net/http's text after the status code ("Request Header Fields Too Large", "Bad Request: missing required Host
// header"). wire's tests pin each form, so a Go release that changes one fails them rather than going back to
// plain text unnoticed.
//
// Serve an http.Server on it: srv.Serve(wire.Listener(l)). Closing it closes l.
func Listener(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return conn{c}, nil
}

// conn is a server's connection whose Writes of net/http's own error answers are rewritten (see Listener).
type conn struct{ net.Conn }

func (c conn) Write(p []byte) (int, error) {
	if b, ok := rewrite(p); ok {
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// NetConn is the connection c wraps (as tls.Conn.NetConn): for a server that needs more of it than net.Conn's
// methods (the worker's drain asks its socket whether a request waits in it).
func (c conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection, as net/http does before it closes one it answered 431 (so that the
// client reads the answer before a reset): without this method here it would close it at once.
func (c conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// textErrorHeaders follow the status line of every plain-text error net/http writes before a handler runs.
const textErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// expectationFailed starts net/http's answer to an Expect it does not support (a response without a body).
const expectationFailed = " 417 Expectation Failed\r\n"

// rewrite returns the JSON answer that replaces p, if p is one of net/http's own error answers (see Listener).
func rewrite(p []byte) ([]byte, bool) {
	if rest, ok := bytes.CutPrefix(p, []byte("HTTP/1.1 ")); ok {
		// "HTTP/1.1 " + "431 Request Header Fields Too Large" + textErrorHeaders + "431 Request Header Fields Too Large"
		if statusLine, body, ok := bytes.Cut(rest, []byte(textErrorHeaders)); ok && !bytes.Contains(statusLine, []byte("\r\n")) {
			status, err := strconv.Atoi(string(statusLine[:min(3, len(statusLine))]))
			if err != nil || status < 400 {
				return nil, false
			}
			msg := string(body)
			if m, ok := bytes.CutPrefix(body, statusLine[:3]); ok {
				msg = string(bytes.TrimLeft(m, " "))
			}
			return jsonAnswer("HTTP/1.1", status, msg), true
		}
	}
	// "HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: ...\r\nContent-Length: 0\r\n\r\n"
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		if bytes.HasPrefix(p, []byte(proto+expectationFailed)) && bytes.Index(p, []byte("\r\n\r\n")) == len(p)-4 {
			return jsonAnswer(proto, http.StatusExpectationFailed, http.StatusText(http.StatusExpectationFailed)+": only 100-continue is supported"), true
		}
	}
	return nil, false
}

// jsonAnswer is a whole response that answers status with an Error and closes the connection.
func jsonAnswer(proto string, status int, msg string) []byte {
	code := CodeBadRequest
	if status == http.StatusRequestHeaderFieldsTooLarge {
		code = CodeHeadersTooLarge
	}
	body := must(encode(&Error{Message: msg, Code: code}))
	head := fmt.Sprintf("%s %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		proto, status, http.StatusText(status), len(body))
	return append([]byte(head), body...)
}
