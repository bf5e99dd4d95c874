package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/wire"
)

// What the API accepts still decodes as before: null as an absent field, surrogate pairs, a U+FFFD the client
// spelled out, the id repeated in the body.
func TestDecodeAcceptsValidBodies(t *testing.T) {
	for _, c := range []struct {
		body string
		want wire.PutRequest
	}{
		{`{"content":"x"}`, wire.PutRequest{Content: "x"}},
		{`{"content":"x","priority":null,"ttl":null,"effective_at":null}`, wire.PutRequest{Content: "x"}},
		{`{"content":"\ud83d\ude00 \u00e9","priority":-2147483648,"ttl":"1h","id":5}`, wire.PutRequest{ID: 5, Content: "😀 é", Priority: -1 << 31, TTL: "1h"}},
		{`{"content":"\ufffd and ` + "\ufffd" + `"}`, wire.PutRequest{Content: "\ufffd and \ufffd"}},
		{`{"content":"a\\udcff"}`, wire.PutRequest{Content: `a\udcff`}}, // an escaped backslash, then text
		{" \n{ \"content\" : \"x\" }\n ", wire.PutRequest{Content: "x"}},
	} {
		var got wire.PutRequest
		if err := decodeBody([]byte(c.body), putShape, &got); err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %+v, %v; want %+v", c.body, got, err, c.want)
		}
	}
	var b wire.BatchRequest
	if err := decodeBody([]byte(`{"put":[{"id":1,"content":"a"},{"id":2,"content":"b","priority":3}],"delete":[7,18446744073709551615]}`), batchShape, &b); err != nil ||
		len(b.Put) != 2 || b.Put[1].Priority != 3 || !reflect.DeepEqual(b.Delete, []uint64{7, 1<<64 - 1}) {
		t.Errorf("batch: %+v, %v", b, err)
	}
}

// The decoder against any body (seed corpus: testdata/fuzz/FuzzDecodePut, FuzzDecodeBatch). A refusal is a 400
// bad_json or a validation error, in the API's terms. What it accepts is JSON whose every key is one of the
// request's, spelled exactly, with every required field present and not null, whose strings hold no U+FFFD the
// client did not spell out, and which decodes again to the same request once re-encoded.
func FuzzDecodePut(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var v, again wire.PutRequest
		if fuzzDecode(t, body, putShape, &v, &again) {
			checkSpelled(t, body, v.Content, v.TTL)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var v, again wire.BatchRequest
		if fuzzDecode(t, body, batchShape, &v, &again) {
			for _, p := range v.Put {
				checkSpelled(t, body, p.Content, p.TTL)
			}
		}
	})
}

// fuzzDecode decodes body into v and checks the outcome; again is a second value of v's type. It reports whether
// body was accepted.
func fuzzDecode(t *testing.T, body []byte, s *shape, v, again any) bool {
	err := decodeBody(body, s, v)
	if err != nil {
		var he *wire.Error
		switch {
		case errors.As(err, &he):
			if he.Status != http.StatusBadRequest || he.Code != "bad_json" {
				t.Fatalf("%q: %d %s %v", body, he.Status, he.Code, err)
			}
			if he.Message == "the body is not valid JSON for this request" {
				t.Fatalf("%q: the check accepted a body the struct decode refused", body)
			}
		case announcement.IsValidation(err):
		default:
			t.Fatalf("%q: an error of no API kind: %T %v", body, err, err)
		}
		for _, bad := range goTerms {
			if strings.Contains(err.Error(), bad) {
				t.Fatalf("%q: %q speaks Go (%q)", body, err, bad)
			}
		}
		return false
	}
	if !json.Valid(body) {
		t.Fatalf("%q: accepted, but it is not JSON", body)
	}
	var generic any
	if err := json.Unmarshal(body, &generic); err != nil {
		t.Fatal(err)
	}
	checkShape(t, body, "", generic, s)
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%q: accepted %+v does not encode: %v", body, v, err)
	}
	if err := decodeBody(enc, s, again); err != nil {
		t.Fatalf("%q: accepted as %+v, but its encoding %s is refused: %v", body, v, enc, err)
	}
	if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
		t.Fatalf("%q: decodes to %s, which decodes to %s", body, enc, enc2)
	}
	return true
}

// checkShape walks a decoded body (encoding/json keeps keys as spelled) against s.
func checkShape(t *testing.T, body []byte, path string, v any, s *shape) {
	switch s.kind {
	case kindObject:
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%q: %s accepted as %T, want an object", body, name(path), v)
		}
		for k, fv := range m {
			f := s.field(k)
			if f == nil {
				t.Fatalf("%q: accepted the key %q in %s", body, k, name(path))
			}
			if fv != nil {
				checkShape(t, body, join(path, k), fv, f.shape)
			}
		}
		for _, f := range s.fields {
			if f.required && m[f.name] == nil {
				t.Fatalf("%q: accepted %s without %s", body, name(path), f.name)
			}
		}
	case kindArray:
		a, ok := v.([]any)
		if !ok {
			t.Fatalf("%q: %s accepted as %T, want an array", body, path, v)
		}
		for _, e := range a {
			if e == nil {
				t.Fatalf("%q: accepted a null in %s", body, path)
			}
			checkShape(t, body, path+"[]", e, s.elem)
		}
	case kindString, kindTime:
		if _, ok := v.(string); !ok {
			t.Fatalf("%q: %s accepted as %T, want a string", body, path, v)
		}
	case kindInt32, kindUint64:
		if _, ok := v.(float64); !ok {
			t.Fatalf("%q: %s accepted as %T, want a number", body, path, v)
		}
	}
}

// checkSpelled fails unless every string is valid UTF-8 and holds U+FFFD only when the body spells one.
func checkSpelled(t *testing.T, body []byte, strs ...string) {
	spelled := bytes.ContainsRune(body, utf8.RuneError) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
	for _, s := range strs {
		if !utf8.ValidString(s) || (strings.ContainsRune(s, utf8.RuneError) && !spelled) {
			t.Fatalf("%q: accepted a string %q with characters the client did not send", body, s)
		}
	}
}

// The shapes describe the structs they are decoded into, field for field, so that what
// check accepts is all the struct decode reads.
func TestShapesMatchTheirStructs(t *testing.T) {
	for _, c := range []struct {
		s   *shape
		typ reflect.Type
	}{
		{putShape, reflect.TypeFor[wire.PutRequest]()},
		{batchShape, reflect.TypeFor[wire.BatchRequest]()},
		{batchShape.fields[0].shape.elem, reflect.TypeFor[wire.PutRequest]()},
	} {
		var tags, names []string
		for i := range c.typ.NumField() {
			tag, _, _ := strings.Cut(c.typ.Field(i).Tag.Get("json"), ",")
			tags = append(tags, tag)
		}
		for _, f := range c.s.fields {
			names = append(names, f.name)
		}
		slices.Sort(tags)
		slices.Sort(names)
		if !slices.Equal(tags, names) {
			t.Errorf("%s has the fields %v, its shape %v", c.typ, tags, names)
		}
	}
}
