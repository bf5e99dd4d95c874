package e2e_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// The JSON examples of the docs are checked against a real daemon. Every ```json block must follow a comment that
// names the requests whose answers it shows, one per line, in the block's order:
//
//	<!-- example: [control] METHOD PATH [BODY] [=> KEY] -->
//
// "control" sends it to control.sock instead of api.sock; "=> KEY" compares the example with the answer's member
// KEY. The answer must have the example's shape: the same keys, each value of the same JSON type, arrays compared
// element by element through the union of their elements' keys; an error's code must be the example's.
var exampleDocs = []string{"../docs/API.md", "../docs/SUPERVISOR.md"}

// optionalKeys may be missing from an example or from an answer: they are there only in some states (each doc says
// when).
var optionalKeys = map[string]bool{
	"expires_at":  true, // an announcement that never expires
	"reason":      true, // a check that is ok
	"critical":    true, // a check that is not critical
	"lock_error":  true, // guard: only while the region is not locked
	"last_reload": true, // the supervisor before its first reload
	"report":      true, // a generation in standby
}

// example is one JSON value of a doc and the request that answers it.
type example struct {
	where   string // doc:line
	control bool
	method  string
	path    string
	body    string
	key     string
	want    any
}

// parseExamples reads the examples of a doc.
func parseExamples(t *testing.T, doc string) []example {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []example
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```json" {
			continue
		}
		where := fmt.Sprintf("%s:%d", filepath.Base(doc), i+1)
		start := i + 1
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		}
		block := strings.Join(lines[start:i], "\n")

		// The comment right before the block.
		end := start - 2
		if end < 0 || strings.TrimSpace(lines[end]) == "" || !strings.HasSuffix(strings.TrimSpace(lines[end]), "-->") {
			t.Errorf("%s: a JSON example without <!-- example: ... --> before it, naming the request that answers it", where)
			continue
		}
		first := end
		for first > 0 && !strings.Contains(lines[first], "<!--") {
			first--
		}
		comment := strings.Join(lines[first:end+1], "\n")
		spec, ok := strings.CutPrefix(strings.TrimSpace(comment), "<!-- example:")
		if !ok {
			t.Errorf("%s: the comment before the example is not <!-- example: ... -->: %s", where, comment)
			continue
		}
		var reqs []string
		for _, l := range strings.Split(strings.TrimSuffix(spec, "-->"), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				reqs = append(reqs, l)
			}
		}

		dec := json.NewDecoder(strings.NewReader(block))
		var values []any
		for {
			var v any
			if err := dec.Decode(&v); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Errorf("%s: the example is not JSON: %v", where, err)
				break
			}
			values = append(values, v)
		}
		if len(values) != len(reqs) {
			t.Errorf("%s: %d JSON values for %d requests", where, len(values), len(reqs))
			continue
		}
		for j, r := range reqs {
			e := example{where: where, want: values[j]}
			r, e.key, _ = strings.Cut(r, " => ")
			if rest, ok := strings.CutPrefix(r, "control "); ok {
				e.control, r = true, rest
			}
			fields := strings.SplitN(r, " ", 3)
			if len(fields) < 2 {
				t.Errorf("%s: request %q: want [control] METHOD PATH [BODY] [=> KEY]", where, r)
				continue
			}
			e.method, e.path = fields[0], fields[1]
			if len(fields) == 3 {
				e.body = fields[2]
			}
			out = append(out, e)
		}
	}
	return out
}

// TestDocExamples sends each documented request to a real daemon and checks that the answer has the documented
// shape. (It caught the status example's "mode", a field the worker's status no longer had, and its "checks":
// [...], which is not JSON.)
func TestDocExamples(t *testing.T) {
	d := newDaemon(t)
	var put wire.AnnouncementResponse
	if status, e := d.api("PUT", "/v1/announcements/1", `{"content":"Maintenance tonight","ttl":"6h"}`, &put); status != 200 {
		t.Fatalf("publish: %d %v", status, e)
	}
	n := 0
	for _, doc := range exampleDocs {
		for _, e := range parseExamples(t, doc) {
			n++
			sock := "api.sock"
			if e.control {
				sock = "control.sock"
			}
			status, ct, body := d.send(sock, e.method, e.path, e.body, nil)
			what := fmt.Sprintf("%s: %s %s", e.where, e.method, e.path)
			var got any
			if err := json.Unmarshal(body, &got); err != nil || ct != "application/json" {
				t.Errorf("%s: %d %q %s: not JSON (%v)", what, status, ct, body, err)
				continue
			}
			if e.key != "" {
				m, _ := got.(map[string]any)
				got = m[e.key]
			}
			wantErr := isError(e.want)
			if wantErr != (status/100 != 2) {
				t.Errorf("%s: status %d, for an example that is %s", what, status, map[bool]string{true: "an error", false: "an answer"}[wantErr])
			}
			for _, p := range shapeDiff("", e.want, got) {
				t.Errorf("%s: %s\nanswer: %s", what, p, body)
			}
			if wantErr && e.want.(map[string]any)["code"] != got.(map[string]any)["code"] {
				t.Errorf("%s: code %v, the example's is %v", what, got.(map[string]any)["code"], e.want.(map[string]any)["code"])
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d examples in %v", n, exampleDocs)
	}
}

func isError(v any) bool {
	m, ok := v.(map[string]any)
	_, has := m["error"]
	return ok && has
}

// kind names a JSON value's type.
func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}

// shapeDiff lists how got differs in shape from want.
func shapeDiff(path string, want, got any) []string {
	if kind(want) != kind(got) {
		return []string{fmt.Sprintf("%s is %s in the example, %s in the answer", cmp.Or(path, "the value"), kind(want), kind(got))}
	}
	var diffs []string
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for k := range w {
			if _, ok := g[k]; !ok && !optionalKeys[k] {
				diffs = append(diffs, fmt.Sprintf("%s%s is in the example, not in the answer", dot(path), k))
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok && !optionalKeys[k] {
				diffs = append(diffs, fmt.Sprintf("%s%s is in the answer, not in the example", dot(path), k))
			}
		}
		for k, wv := range w {
			if gv, ok := g[k]; ok {
				diffs = append(diffs, shapeDiff(dot(path)+k, wv, gv)...)
			}
		}
	case []any:
		g := got.([]any)
		if len(w) > 0 && len(g) > 0 {
			diffs = shapeDiff(path+"[]", union(w), union(g))
		}
	}
	slices.Sort(diffs)
	return diffs
}

func dot(path string) string {
	if path == "" {
		return ""
	}
	return path + "."
}

// union is the elements of an array as one: for objects, every key any of them has (its value from the first
// that has it); otherwise the first element.
func union(elems []any) any {
	if _, ok := elems[0].(map[string]any); !ok {
		return elems[0]
	}
	u := map[string]any{}
	for _, e := range elems {
		m, ok := e.(map[string]any)
		if !ok {
			return e // mixed kinds: the comparison says so
		}
		for k, v := range m {
			if _, seen := u[k]; !seen {
				u[k] = v
			}
		}
	}
	return u
}

// send sends a raw request on one of the daemon's sockets, with extra header fields, and returns the answer's
// status, content type and body.
func (d *daemon) send(sock, method, path, body string, header http.Header) (int, string, []byte) {
	d.t.Helper()
	c := proctest.UnixClient(filepath.Join(d.runtime, sock), 60*time.Second, true)
	req, _ := http.NewRequest(method, "http://announcementd"+path, strings.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s on %s: %v", method, path, sock, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// sendRaw writes raw bytes on a new connection to one of the daemon's sockets and reads the answer.
func (d *daemon) sendRaw(sock, raw string) (int, string, []byte) {
	d.t.Helper()
	c, err := net.Dial("unix", filepath.Join(d.runtime, sock))
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, raw) // the server may answer before it has read it all
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		d.t.Fatalf("%.40q on %s: %v", raw, sock, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// TestEveryErrorIsJSON: both sockets answer every error as a wire.Error, {"error": ..., "code": ...}: a path or
// method they do not have, header fields over the limit and a malformed request (both refused by net/http before
// any handler runs). The API answers a method it does not have with 404 (docs/API.md), the control socket with
// 405 and Allow.
func TestEveryErrorIsJSON(t *testing.T) {
	d := newDaemon(t)
	big := func(n int) http.Header { return http.Header{"X-Padding": {strings.Repeat("p", n)}} }
	for _, c := range []struct {
		sock, method, path string
		header             http.Header
		raw                string
		status             int
		code               string
	}{
		{sock: "api.sock", method: "GET", path: "/v2/nothing", status: 404, code: wire.CodeNotFound},
		{sock: "api.sock", method: "DELETE", path: "/v1/status", status: 404, code: wire.CodeNotFound},
		{sock: "api.sock", method: "GET", path: "/v1/status", header: big(24 << 10), status: 431, code: wire.CodeHeadersTooLarge},
		{sock: "api.sock", raw: "GET /v1/status HTTP/1.1\r\n\r\n", status: 400, code: wire.CodeBadRequest},
		{sock: "api.sock", raw: "GET /v1/status HTTP/1.1\r\nHost: a\r\nExpect: nothing\r\n\r\n", status: 417, code: wire.CodeBadRequest},
		{sock: "control.sock", method: "GET", path: "/v2/nothing", status: 404, code: wire.CodeNotFound},
		{sock: "control.sock", method: "DELETE", path: "/v1/status", status: 405, code: wire.CodeMethodNotAllowed},
		{sock: "control.sock", method: "GET", path: "/v1/reload", status: 405, code: wire.CodeMethodNotAllowed},
		{sock: "control.sock", method: "POST", path: "/v1/reload?wait=x", status: 400, code: wire.CodeBadRequest},
		{sock: "control.sock", method: "GET", path: "/v1/status", header: big(1100 << 10), status: 431, code: wire.CodeHeadersTooLarge},
		{sock: "control.sock", raw: "GET /v1/status HTTP/1.1\r\n\r\n", status: 400, code: wire.CodeBadRequest},
	} {
		var (
			status int
			ct     string
			body   []byte
		)
		if c.raw != "" {
			status, ct, body = d.sendRaw(c.sock, c.raw)
		} else {
			status, ct, body = d.send(c.sock, c.method, c.path, "", c.header)
		}
		var e wire.Error
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if status != c.status || ct != "application/json" || dec.Decode(&e) != nil || e.Code != c.code || e.Message == "" {
			t.Errorf("%s %s %s %.30q: %d %q %s; want %d, a JSON error with code %s", c.sock, c.method, c.path, c.raw, status, ct, body, c.status, c.code)
		}
	}
}
