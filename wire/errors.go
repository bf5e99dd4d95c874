package wire

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Error is every error answer of both sockets, {"error": MESSAGE, "code": CODE}, and the Go error a client makes
// of one (with the HTTP status it came with).
type Error struct {
	Message string `json:"error"` // for a person: what was wrong, and where
	Code    string `json:"code"`  // for a program: one of the Code constants
	Status  int    `json:"-"`     // the HTTP status; not in the body
}

func (e *Error) Error() string { return e.Message }

// The error codes. docs/API.md (Errors) says when the API answers each; the control socket answers
// CodeBadRequest, CodeUnavailable, CodeNotFound and CodeMethodNotAllowed of its own; and either socket may answer
// the codes of requests net/http refuses before they reach a handler (listener.go).
const (
	CodeInvalid      = "invalid"        // 400: a value the request may not have
	CodeBadJSON      = "bad_json"       // 400: a body that is not the request's JSON
	CodeBadBody      = "bad_body"       // 400: a body that could not be read
	CodeUnauthorized = "unauthorized"   // 401: TCP without the right bearer token
	CodeNotFound     = "not_found"      // 404: no such announcement, or no such endpoint
	CodeFull         = "full"           // 409: the board cannot hold the result
	CodeBodyTooLarge = "body_too_large" // 413
	CodeInternal     = "internal"       // 500: the store, the board, or the answer itself failed

	CodeBadRequest       = "bad_request"        // 400 (or 417, 501, 505): not a request the server takes
	CodeMethodNotAllowed = "method_not_allowed" // 405: the path exists, the method does not (see Allow)
	CodeHeadersTooLarge  = "headers_too_large"  // 431: the request's header fields are over the server's limit
	CodeUnavailable      = "unavailable"        // 503: the supervisor is stopping
)

// WriteJSON answers v as indented JSON with status. If v cannot be encoded, the answer is a 500 internal Error
// instead (never half a body).
func WriteJSON(rw http.ResponseWriter, status int, v any) {
	b, err := encode(v)
	if err != nil {
		status, b = http.StatusInternalServerError, must(encode(&Error{Code: CodeInternal, Message: "encoding the answer: " + err.Error()}))
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	rw.Write(b)
}

// WriteError answers an Error with status, code and msg.
func WriteError(rw http.ResponseWriter, status int, code, msg string) {
	WriteJSON(rw, status, &Error{Message: msg, Code: code})
}

// encode is the body WriteJSON writes: v indented by two spaces, and a newline.
func encode(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// must is for encoding an *Error, which cannot fail.
func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// NotFound answers 404 not_found for any request: an API's catch-all ("/"). doc names where the endpoints are
// documented, for the message.
func NotFound(doc string) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		WriteError(rw, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no such endpoint: %s %s (see %s)", r.Method, r.URL.Path, doc))
	})
}

// Handler serves mux, with JSON answers for the requests mux refuses itself: 404 not_found (NotFound) for a path
// none of its patterns has, 405 method_not_allowed with an Allow header for a method the path's patterns do not
// take. Everything else, a redirect to a cleaned path included, is mux's. (A mux with a "/" pattern refuses
// nothing.) doc is as for NotFound.
func Handler(mux *http.ServeMux, doc string) http.Handler {
	notFound := NotFound(doc)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" { // a registered pattern matched (ServeHTTP sets the path values Handler does not)
			mux.ServeHTTP(rw, r)
			return
		}
		// mux's own answer: see what it is without writing it.
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusNotFound:
			notFound.ServeHTTP(rw, r)
		case http.StatusMethodNotAllowed:
			allow := probe.header.Get("Allow")
			rw.Header().Set("Allow", allow)
			WriteError(rw, http.StatusMethodNotAllowed, CodeMethodNotAllowed, fmt.Sprintf("%s %s: the method is not allowed; %s allows %s (see %s)",
				r.Method, r.URL.Path, r.URL.Path, strings.ReplaceAll(allow, ", ", " or "), doc))
		default:
			mux.ServeHTTP(rw, r)
		}
	})
}

// statusProbe is a ResponseWriter that keeps the headers and status and drops the body.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }

func (p *statusProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}

func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}
