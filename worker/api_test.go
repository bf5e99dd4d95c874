package worker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/announcementd/announcementd/announcement"
)

// goTerms are what Go's encoding/json puts in its errors and a client must never see.
var goTerms = []string{"Go value", "Go struct", "worker.", "putRequest", "batchRequest", "wire.", "PutRequest", "BatchRequest", "unmarshal", "int32", "uint64", "json:"}

// call sends one request to w's API and returns the status and the JSON error answer.
func call(t *testing.T, h http.Handler, method, path, body string, header ...string) (int, string, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e struct{ Error, Code string }
	json.Unmarshal(rec.Body.Bytes(), &e)
	return rec.Code, e.Code, e.Error
}

type refusal struct {
	method, path, body string
	code               string   // "invalid" or "bad_json"
	want               []string // in the message
}

// checkRefused sends each request and checks it is a 400 with code and the message parts, in the API's terms,
// and that nothing changed.
func checkRefused(t *testing.T, w *Worker, cases []refusal) {
	t.Helper()
	h := w.Handler("")
	before, held := w.Version(), w.List()
	for _, c := range cases {
		status, code, msg := call(t, h, c.method, c.path, c.body)
		if status != http.StatusBadRequest || code != c.code {
			t.Errorf("%s %.60q: %d %s %q; want 400 %s", c.path, c.body, status, code, msg, c.code)
			continue
		}
		for _, want := range c.want {
			if !strings.Contains(msg, want) {
				t.Errorf("%s %.60q: %q; want it to say %q", c.path, c.body, msg, want)
			}
		}
		for _, bad := range goTerms {
			if strings.Contains(msg, bad) {
				t.Errorf("%s %.60q: %q speaks Go (%q)", c.path, c.body, msg, bad)
			}
		}
	}
	if v, now := w.Version(), w.List(); v != before || !reflect.DeepEqual(now, held) {
		t.Errorf("refused requests changed the board (version %d -> %d) or the set (%v -> %v)", before, v, held, now)
	}
}

// PUT refuses what docs/API.md calls invalid: no content, null, an empty content, a key in another case, a key
// twice; its errors name the field and its line and column, never a Go type. (Before: {}, null and
// {"content":""} published an empty announcement, "Content" and duplicates were accepted, and type errors read
// "cannot unmarshal array into Go value of type worker.putRequest".)
func TestPutRefusesInvalidBodies(t *testing.T) {
	w, _ := newWorker(t)
	if _, err := w.Apply([]announcement.Announcement{{ID: 1, Content: "keep"}}, nil); err != nil {
		t.Fatal(err)
	}
	const put = "/v1/announcements/2"
	checkRefused(t, w, []refusal{
		{"PUT", put, `{}`, "invalid", []string{"content is required"}},
		{"PUT", put, `null`, "invalid", []string{"the body is null", "content"}},
		{"PUT", put, " null\n", "invalid", []string{"the body is null"}},
		{"PUT", put, `{"content":null}`, "invalid", []string{"content is required; it is null, at line 1, column 2"}},
		{"PUT", put, `{"priority":3}`, "invalid", []string{"content is required"}},
		{"PUT", put, `{"content":""}`, "invalid", []string{"content is empty", "1 to 256 bytes"}},
		{"PUT", "/v1/announcements/1", `{"content":""}`, "invalid", []string{"content is empty"}}, // not even as a replacement
		{"PUT", put, `{"Content":"x"}`, "bad_json", []string{`unknown field "Content"`, "line 1, column 2", "case-sensitive", `"content"`}},
		{"PUT", put, `{"content":"x","TTL":"1h"}`, "bad_json", []string{`unknown field "TTL"`, "line 1, column 16", `"ttl"`}},
		{"PUT", put, `{"content":"x","colour":"red"}`, "bad_json", []string{`unknown field "colour"`, "content, priority, effective_at, ttl"}},
		{"PUT", put, `{"content":"a","content":"b"}`, "bad_json", []string{`field "content" twice`, "line 1, column 2", "line 1, column 16"}},
		{"PUT", put, "{\n  \"content\": \"a\",\n  \"priority\": 1,\n  \"priority\": 2\n}", "bad_json", []string{`"priority" twice`, "line 3, column 3", "line 4, column 3"}},
		{"PUT", put, `[]`, "bad_json", []string{"the body must be an object, not an array, at line 1, column 1"}},
		{"PUT", put, `"x"`, "bad_json", []string{"the body must be an object, not a string"}},
		{"PUT", put, `{"content":["x"]}`, "bad_json", []string{"content must be a string, not an array, at line 1, column 12"}},
		{"PUT", put, `{"content":"x","priority":"high"}`, "bad_json", []string{"priority must be a number", "not a string", "column 27"}},
		{"PUT", put, `{"content":"x","priority":1.5}`, "invalid", []string{"priority 1.5 is not an integer"}},
		{"PUT", put, `{"content":"x","priority":3000000000}`, "invalid", []string{"priority 3000000000 is out of range (-2147483648 to 2147483647)"}},
		{"PUT", put, `{"content":"x","id":-2}`, "invalid", []string{"id -2 is not a positive integer"}},
		{"PUT", put, `{"content":"x","ttl":5}`, "bad_json", []string{"ttl must be a string, not a number"}},
		{"PUT", put, `{"content":"x","effective_at":"soon"}`, "bad_json", []string{"not valid JSON", `effective_at "soon" is not an RFC 3339 time`}},
		{"PUT", put, `{"content":"x","effective_at":5}`, "bad_json", []string{"effective_at must be a string (an RFC 3339 time), not a number"}},
		{"PUT", put, `{"content":"\udcff"}`, "invalid", []string{"content is not valid UTF-8", `lone surrogate escape \udcff`, "column 13"}},
		{"PUT", put, `{"content":"ok \ud83d"}`, "invalid", []string{"lone surrogate"}},
		{"PUT", put, `{"content":"\ud83dx\ude00"}`, "invalid", []string{"lone surrogate"}},
		{"PUT", put, "{\"content\":\"a\xffb\"}", "invalid", []string{"content is not valid UTF-8 (an invalid byte), at line 1, column 14"}},
		{"PUT", put, `{"content":`, "bad_json", []string{"not valid JSON", "ends in the middle"}},
		{"PUT", put, `{"content":"x",}`, "bad_json", []string{"invalid character '}'", "line 1, column 16"}},
		{"PUT", put, `{"content" "x"}`, "bad_json", []string{"invalid character '\"' after object key, at line 1, column 12"}},
		{"PUT", put, "{\n\"content\":\n  tru}", "bad_json", []string{"in literal true", "line 3, column 6"}},
		{"PUT", put, `{"content":"x"} {}`, "bad_json", []string{"data after its JSON value, at line 1, column 17"}},
		{"PUT", put, ``, "bad_json", []string{"the body is empty"}},
	})
}

// A batch refuses the same at every level: each put, each id. (Before: puts without content or with "Content"
// were accepted, and type errors spoke Go.)
func TestBatchRefusesInvalidBodies(t *testing.T) {
	w, _ := newWorker(t)
	if _, err := w.Apply([]announcement.Announcement{{ID: 1, Content: "keep"}}, nil); err != nil {
		t.Fatal(err)
	}
	const batch = "/v1/batch"
	checkRefused(t, w, []refusal{
		{"POST", batch, `null`, "invalid", []string{"the body is null"}},
		{"POST", batch, `{"put":[{"id":3,"content":""}]}`, "invalid", []string{"put[0] (id 3): content is empty"}},
		{"POST", batch, `{"put":[{"id":3,"content":"x"},{"id":4}]}`, "invalid", []string{"put[1].content is required; the object at line 1, column 32 has none"}},
		{"POST", batch, `{"put":[{"content":"x"}]}`, "invalid", []string{"put[0].id is required"}},
		{"POST", batch, `{"put":[{"id":3,"content":"x","Content":"y"}]}`, "bad_json", []string{`unknown field "Content" in put[0], at line 1, column 31`, "case-sensitive"}},
		{"POST", batch, `{"put":[{"id":3,"id":4,"content":"x"}]}`, "bad_json", []string{`put[0] has the field "id" twice`}},
		{"POST", batch, `{"put":[],"put":[{"id":3,"content":"x"}]}`, "bad_json", []string{`the body has the field "put" twice`}},
		{"POST", batch, `{"Put":[{"id":3,"content":"x"}]}`, "bad_json", []string{`unknown field "Put"`, `"put"`}},
		{"POST", batch, `{"put":[null]}`, "bad_json", []string{"put[0] must be an object, not null"}},
		{"POST", batch, `{"put":{"id":3}}`, "bad_json", []string{"put must be an array, not an object"}},
		{"POST", batch, `{"put":[[]]}`, "bad_json", []string{"put[0] must be an object, not an array"}},
		{"POST", batch, `{"put":[{"id":"3","content":"x"}]}`, "bad_json", []string{"put[0].id must be a number", "not a string"}},
		{"POST", batch, `{"put":[{"id":3,"content":"x","priority":1e3}]}`, "invalid", []string{"put[0].priority 1e3 is not an integer"}},
		{"POST", batch, `{"put":[{"id":3,"content":"\udcff"}]}`, "invalid", []string{"put[0].content is not valid UTF-8"}},
		{"POST", batch, `{"delete":["3"]}`, "bad_json", []string{"delete[0] must be a number", "not a string"}},
		{"POST", batch, `{"delete":[-3]}`, "invalid", []string{"delete[0] -3 is not a positive integer"}},
		{"POST", batch, `{"delete":[18446744073709551616]}`, "invalid", []string{"delete[0] 18446744073709551616 is not a positive integer"}},
		{"POST", batch, `{"delete":[null]}`, "bad_json", []string{"delete[0] must be a number"}},
		{"POST", batch, `{"delete":[1],"Delete":[1]}`, "bad_json", []string{`unknown field "Delete"`}},
	})
}

// The bearer scheme is case-insensitive (RFC 9110 §11.1); the token is not. (Before: "bearer TOKEN" got 401.)
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	w, _ := newWorker(t)
	h := w.Handler("s3cret")
	for _, auth := range []string{"Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR s3cret", "Bearer   s3cret"} {
		if status, _, msg := call(t, h, "GET", "/v1/status", "", "Authorization", auth); status != http.StatusOK {
			t.Errorf("%q: %d %s; want 200", auth, status, msg)
		}
	}
	for _, auth := range [][]string{
		{}, {"Authorization", "Bearer S3CRET"}, {"Authorization", "Bearer s3cre"}, {"Authorization", "Bearer s3cretx"},
		{"Authorization", "Basic s3cret"}, {"Authorization", "Bearers3cret"}, {"Authorization", "s3cret"},
		{"Authorization", "Bearer"}, {"Authorization", "Bearer "}, {"Authorization", "Bearer s3cret", "Authorization", "Bearer s3cret"},
	} {
		status, code, _ := call(t, h, "GET", "/v1/status", "", auth...)
		if status != http.StatusUnauthorized || code != "unauthorized" {
			t.Errorf("%q: %d %s; want 401 unauthorized", auth, status, code)
		}
	}
}
