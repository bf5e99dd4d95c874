package wire_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/healthcheck"
	"github.com/announcementd/announcementd/wire"
)

// keys returns the keys of the JSON object b, sorted.
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, b)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// decodeError checks that a response is a JSON Error with status and code, and returns it.
func decodeError(t *testing.T, resp *http.Response, status int, code string) wire.Error {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q %s; want %d as JSON", resp.StatusCode, resp.Header.Get("Content-Type"), body, status)
	}
	if k := keys(t, body); !slices.Equal(k, []string{"code", "error"}) {
		t.Fatalf("error keys %v in %s; want code and error", k, body)
	}
	var e wire.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != code || e.Message == "" {
		t.Fatalf("error %+v; want code %q and a message", e, code)
	}
	return e
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	wire.WriteError(rec, http.StatusConflict, wire.CodeFull, "the board is full")
	if got, want := rec.Body.String(), "{\n  \"error\": \"the board is full\",\n  \"code\": \"full\"\n}\n"; got != want {
		t.Errorf("body %q; want %q", got, want)
	}
	e := decodeError(t, rec.Result(), http.StatusConflict, wire.CodeFull)
	if e.Status != 0 {
		t.Errorf("Status came from the body: %+v", e)
	}
}

// A value that cannot be encoded is a 500 internal Error, never a 200 with half a body.
func TestWriteJSONUnencodable(t *testing.T) {
	rec := httptest.NewRecorder()
	wire.WriteJSON(rec, http.StatusOK, wire.WorkerStatus{Health: healthcheck.State(9)})
	e := decodeError(t, rec.Result(), http.StatusInternalServerError, wire.CodeInternal)
	if !strings.Contains(e.Message, "invalid health state 9") {
		t.Errorf("message %q", e.Message)
	}
}

// Handler answers the mux's own 404 and 405 as Errors, and leaves everything else to the mux: its patterns, their
// path values, and its redirects.
func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(rw http.ResponseWriter, r *http.Request) {
		wire.WriteJSON(rw, http.StatusOK, wire.ReloadAccepted{Accepted: true})
	})
	mux.HandleFunc("POST /v1/items/{id}", func(rw http.ResponseWriter, r *http.Request) {
		wire.WriteJSON(rw, http.StatusOK, wire.DeleteResponse{Deleted: uint64(len(r.PathValue("id")))})
	})
	srv := httptest.NewServer(wire.Handler(mux, "docs/X.md"))
	defer srv.Close()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	do := func(method, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	if e := decodeError(t, do("GET", "/nothing"), http.StatusNotFound, wire.CodeNotFound); e.Message != "no such endpoint: GET /nothing (see docs/X.md)" {
		t.Errorf("404: %q", e.Message)
	}
	resp := do("POST", "/v1/status")
	e := decodeError(t, resp, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)
	if allow := resp.Header.Get("Allow"); allow != "GET, HEAD" || !strings.Contains(e.Message, "/v1/status allows GET or HEAD") {
		t.Errorf("405: Allow %q, %q", allow, e.Message)
	}
	decodeError(t, do("GET", "/v1/items/7"), http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed)

	var got wire.DeleteResponse
	if resp := do("POST", "/v1/items/12345"); resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&got) != nil || got.Deleted != 5 {
		t.Errorf("a pattern with a path value: %d %+v", resp.StatusCode, got)
	}
	if resp := do("GET", "/v1//status"); resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "/v1/status" {
		t.Errorf("an unclean path: %d %q; want the mux's redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// serveRaw serves h on a wire.Listener (over TCP and over a Unix socket) with MaxHeaderBytes 1 KiB, and returns
// a function that sends raw bytes on a new connection and reads the answer.
func serveRaw(t *testing.T, network string) func(raw string) *http.Response {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		dir, err := os.MkdirTemp("", "wire")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "s")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		wire.WriteJSON(rw, http.StatusOK, wire.ReloadAccepted{Accepted: true})
	})
	srv := &http.Server{Handler: mux, MaxHeaderBytes: 1 << 10, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(wire.Listener(l))
	}()
	t.Cleanup(func() {
		// Shutdown, not Close: it waits for every connection's goroutine, also one that net/http keeps for a
		// moment after an error answer (closeWriteAndWait) before it closes the connection.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutting the server down: %v", err)
		}
		<-served
	})
	return func(raw string) *http.Response {
		t.Helper()
		c, err := net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go io.WriteString(c, raw) // the server may answer before it has read it all
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%.40q: %v", raw, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
}

// The errors net/http answers before any handler runs are Errors too, on a wire.Listener.
func TestListenerErrorsAreJSON(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			send := serveRaw(t, network)
			huge := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
			for _, c := range []struct {
				name, raw string
				status    int
				code, msg string
			}{
				{"headers too large", huge, 431, wire.CodeHeadersTooLarge, "Request Header Fields Too Large"},
				{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, wire.CodeBadRequest, "Bad Request: missing required Host header"},
				{"a bad header", "GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", 400, wire.CodeBadRequest, "Bad Request: invalid header name"},
				{"not HTTP", "HELLO\r\n\r\n", 400, wire.CodeBadRequest, "Bad Request"},
				{"a transfer encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, wire.CodeBadRequest, "Unsupported transfer encoding"},
				{"HTTP/3", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, wire.CodeBadRequest, "HTTP Version Not Supported: unsupported protocol version"},
				{"an expectation", "GET / HTTP/1.1\r\nHost: x\r\nExpect: wonders\r\n\r\n", 417, wire.CodeBadRequest, "Expectation Failed: only 100-continue is supported"},
			} {
				resp := send(c.raw)
				if e := decodeError(t, resp, c.status, c.code); e.Message != c.msg {
					t.Errorf("%s: message %q; want %q", c.name, e.Message, c.msg)
				}
				if !resp.Close {
					t.Errorf("%s: the connection stays open", c.name)
				}
			}
			// A handler's answers are left alone, on a connection kept alive.
			resp := send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
			if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "{\n  \"accepted\": true\n}\n" {
				t.Errorf("a handler's answer: %d %q", resp.StatusCode, b)
			}
		})
	}
}

// ServiceStatus is the worker's status with the supervisor's own in its "supervisor" object, or the worker's
// brief one when there is none; read back, either fills Supervisor.
func TestServiceStatus(t *testing.T) {
	w := wire.WorkerStatus{Supervisor: wire.SupervisorBrief{PID: 10, Build: "b"}, Worker: wire.WorkerInfo{PID: 11},
		HealthReasons: []string{}, Checks: []healthcheck.Check{}}
	plain, err := json.Marshal(wire.ServiceStatus{WorkerStatus: w})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(w)
	if string(plain) != string(want) {
		t.Errorf("without a supervisor status:\n%s\nwant the worker's:\n%s", plain, want)
	}
	var back wire.ServiceStatus
	if err := json.Unmarshal(plain, &back); err != nil || back.Supervisor == nil || back.Supervisor.PID != 10 || back.Worker.PID != 11 {
		t.Errorf("read back: %v %+v", err, back.Supervisor)
	}

	sup := &wire.SupervisorStatus{PID: 10, State: "serving", Restarts: 2, Generations: []wire.GenerationStatus{{Generation: 3, State: wire.GenerationServing}}}
	full, err := json.Marshal(wire.ServiceStatus{WorkerStatus: w, Supervisor: sup})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	json.Unmarshal(full, &m)
	if k, wk := keys(t, m["supervisor"]), keys(t, mustJSON(t, sup)); !slices.Equal(k, wk) {
		t.Errorf("supervisor keys %v; want the supervisor status's %v", k, wk)
	}
	if k, wk := keys(t, full), keys(t, want); !slices.Equal(k, wk) {
		t.Errorf("keys %v; want the worker status's %v", k, wk)
	}
	back = wire.ServiceStatus{}
	if err := json.Unmarshal(full, &back); err != nil || back.Supervisor.Restarts != 2 || back.Supervisor.Generations[0].Generation != 3 {
		t.Errorf("read back: %v %+v", err, back.Supervisor)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
