package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/wire"
)

// Request bodies are read in two passes. The first (check) walks the body's JSON tokens against the request's
// shape and refuses, with the field's path and its line and column, everything Go's decoder would let through or
// explain in its own terms: a key that matches a field only case-insensitively ("Content"), a key twice in one
// object (the decoder keeps the last one), a required field missing or null, a value of the wrong JSON type, a
// number that is not an integer or out of range, a time that is not RFC 3339, a string that is not valid UTF-8
// (invalid bytes, or a lone surrogate escape, which the decoder would quietly turn into U+FFFD), data after the
// value. Only a body that passes is decoded into the request's struct, which then cannot fail. A custom decoder
// of the whole request would duplicate encoding/json; a token pass alone checks every object level, and what it
// accepts is exactly what the struct decode reads.

// kind is what a JSON value of a request must be.
type kind uint8

const (
	kindObject kind = iota + 1
	kindArray
	kindString
	kindTime   // a string holding an RFC 3339 time
	kindInt32  // an integer from -2^31 to 2^31-1
	kindUint64 // an integer from 0 to 2^64-1 (an id: 0 is refused by validation, with its own message)
)

// shape is the form of one value of a request.
type shape struct {
	kind   kind
	fields []field // kindObject
	elem   *shape  // kindArray; its elements may not be null
}

// field is one member of an object. A null value is the same as leaving the field out.
type field struct {
	name     string
	shape    *shape
	required bool
}

var (
	putFields = []field{
		{name: "content", shape: &shape{kind: kindString}, required: true},
		{name: "priority", shape: &shape{kind: kindInt32}},
		{name: "effective_at", shape: &shape{kind: kindTime}},
		{name: "ttl", shape: &shape{kind: kindString}},
	}
	// putShape is the body of PUT /v1/announcements/{id}: the id is in the path, and may be repeated in the body.
	putShape = &shape{kind: kindObject, fields: append([]field{{name: "id", shape: &shape{kind: kindUint64}}}, putFields...)}
	// batchShape is the body of POST /v1/batch; each put names its id.
	batchShape = &shape{kind: kindObject, fields: []field{
		{name: "put", shape: &shape{kind: kindArray, elem: &shape{kind: kindObject,
			fields: append([]field{{name: "id", shape: &shape{kind: kindUint64}, required: true}}, putFields...)}}},
		{name: "delete", shape: &shape{kind: kindArray, elem: &shape{kind: kindUint64}}},
	}}
)

func (s *shape) field(name string) *field {
	for i := range s.fields {
		if s.fields[i].name == name {
			return &s.fields[i]
		}
	}
	return nil
}

// decode reads a JSON body of at most limit bytes into v, which must be the struct that s describes. Errors are
// a *wire.Error (body_too_large, bad_body, bad_json) or an *announcement.ValidationError (invalid), with messages
// in the API's terms: field paths such as put[2].content, and line and column in the body.
func decode(rw http.ResponseWriter, r *http.Request, limit int64, s *shape, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &wire.Error{Status: http.StatusRequestEntityTooLarge, Code: wire.CodeBodyTooLarge, Message: fmt.Sprintf("the body is larger than %d bytes", limit)}
		}
		return &wire.Error{Status: http.StatusBadRequest, Code: wire.CodeBadBody, Message: "reading the body: " + err.Error()}
	}
	return decodeBody(body, s, v)
}

// decodeBody is decode once the body is read.
func decodeBody(body []byte, s *shape, v any) error {
	if err := check(body, s); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		// check accepted the body, so this is a bug; the decoder's message would name Go types.
		return &wire.Error{Status: http.StatusBadRequest, Code: wire.CodeBadJSON, Message: "the body is not valid JSON for this request"}
	}
	return nil
}

// check is the first pass (see the top of this file).
func check(body []byte, s *shape) error {
	c := &checker{body: body, dec: json.NewDecoder(bytes.NewReader(body))}
	c.dec.UseNumber()
	start := c.next()
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return &announcement.ValidationError{Msg: "the body is null; it must be a JSON object with at least content (see docs/API.md)"}
	}
	if start == int64(len(body)) {
		return c.badJSON("the body is empty; it must be a JSON object such as {\"content\": \"...\"}")
	}
	if err := c.value("", s, start); err != nil {
		return err
	}
	at := c.next()
	if _, err := c.dec.Token(); err != io.EOF {
		return c.badJSON(fmt.Sprintf("the body has data after its JSON value, at %s", c.pos(at)))
	}
	return nil
}

type checker struct {
	body []byte
	dec  *json.Decoder
}

// next is the offset at which the next token starts: past the white space and separators after the last one.
func (c *checker) next() int64 {
	off := c.dec.InputOffset()
	for off < int64(len(c.body)) {
		switch c.body[off] {
		case ' ', '\t', '\n', '\r', ',', ':':
			off++
			continue
		}
		break
	}
	return off
}

// pos names an offset as a person counts: "line 1, column 12".
func (c *checker) pos(off int64) string {
	before := c.body[:min(off, int64(len(c.body)))]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}

func (c *checker) badJSON(msg string) error {
	return &wire.Error{Status: http.StatusBadRequest, Code: wire.CodeBadJSON, Message: "the body is not valid JSON for this request: " + msg}
}

func invalidf(format string, args ...any) error {
	return &announcement.ValidationError{Msg: fmt.Sprintf(format, args...)}
}

// token reads the next token, turning the decoder's errors into messages with a position.
func (c *checker) token() (json.Token, error) {
	t, err := c.dec.Token()
	var syn *json.SyntaxError
	switch {
	case err == nil:
		return t, nil
	case errors.As(err, &syn):
		// The Decoder's offsets depend on how far it had buffered; Unmarshal's scan of the whole body finds the
		// same first error and says exactly where: its Offset is just past the offending byte.
		if errors.As(json.Unmarshal(c.body, new(json.RawMessage)), &syn) {
			return nil, c.badJSON(fmt.Sprintf("%s, at %s", syn.Error(), c.pos(max(syn.Offset-1, 0))))
		}
		return nil, c.badJSON(syn.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, c.badJSON(fmt.Sprintf("the body ends in the middle of its JSON value, at %s", c.pos(int64(len(c.body)))))
	}
	return nil, c.badJSON(err.Error())
}

// what names a token's JSON type, for messages.
func what(t json.Token) string {
	switch t := t.(type) {
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "true or false"
	}
	return "null"
}

var kindNames = map[kind]string{
	kindObject: "an object", kindArray: "an array", kindString: "a string", kindTime: "a string (an RFC 3339 time)",
	kindInt32: "a number (an integer)", kindUint64: "a number (a positive integer)",
}

// name is how messages call the value at path.
func name(path string) string {
	if path == "" {
		return "the body"
	}
	return path
}

// value checks the value that starts at offset start against s; null is refused.
func (c *checker) value(path string, s *shape, start int64) error {
	_, err := c.valueOrNull(path, s, start, false)
	return err
}

// valueOrNull is value that, when nullable, accepts null and reports it.
func (c *checker) valueOrNull(path string, s *shape, start int64, nullable bool) (null bool, err error) {
	t, err := c.token()
	if err != nil {
		return false, err
	}
	if t == nil && nullable {
		return true, nil
	}
	wrong := func() error {
		return c.badJSON(fmt.Sprintf("%s must be %s, not %s, at %s", name(path), kindNames[s.kind], what(t), c.pos(start)))
	}
	switch s.kind {
	case kindObject:
		if t != json.Delim('{') {
			return false, wrong()
		}
		return false, c.object(path, s, start)
	case kindArray:
		if t != json.Delim('[') {
			return false, wrong()
		}
		for i := 0; c.dec.More(); i++ {
			if err := c.value(fmt.Sprintf("%s[%d]", path, i), s.elem, c.next()); err != nil {
				return false, err
			}
		}
		_, err := c.token() // ']'
		return false, err
	case kindString, kindTime:
		str, ok := t.(string)
		if !ok {
			return false, wrong()
		}
		raw := c.body[start:c.dec.InputOffset()]
		if err := c.checkUTF8(path, raw, start); err != nil {
			return false, err
		}
		if s.kind == kindTime {
			var tm time.Time
			if tm.UnmarshalJSON(raw) != nil { // exactly what the struct decode will do
				return false, c.badJSON(fmt.Sprintf("%s %q is not an RFC 3339 time such as 2026-11-25T10:00:00Z, at %s", path, str, c.pos(start)))
			}
		}
		return false, nil
	case kindUint64, kindInt32:
		n, ok := t.(json.Number)
		if !ok {
			return false, wrong()
		}
		if s.kind == kindInt32 {
			if _, err := strconv.ParseInt(string(n), 10, 32); err != nil {
				if errors.Is(err, strconv.ErrRange) {
					return false, invalidf("%s %s is out of range (%d to %d), at %s", path, n, int32(-1<<31), int32(1<<31-1), c.pos(start))
				}
				return false, invalidf("%s %s is not an integer, at %s", path, n, c.pos(start))
			}
			return false, nil
		}
		if _, err := strconv.ParseUint(string(n), 10, 64); err != nil {
			return false, invalidf("%s %s is not a positive integer (1 to %d), at %s", name(path), n, uint64(1<<64-1), c.pos(start))
		}
		return false, nil
	}
	return false, fmt.Errorf("worker: unknown shape kind %d", s.kind) // unreachable: the shapes are this file's
}

// object checks the members of an object whose '{' was just read.
func (c *checker) object(path string, s *shape, start int64) error {
	seen := map[string]int64{} // field name -> where its key starts
	present := map[string]bool{}
	for c.dec.More() {
		at := c.next()
		t, err := c.token()
		if err != nil {
			return err
		}
		key := t.(string) // the decoder reads only strings as keys
		f := s.field(key)
		if f == nil {
			return c.unknown(path, s, key, at)
		}
		if first, dup := seen[key]; dup {
			return c.badJSON(fmt.Sprintf("%s has the field %q twice, at %s and at %s", name(path), key, c.pos(first), c.pos(at)))
		}
		seen[key] = at
		null, err := c.valueOrNull(join(path, key), f.shape, c.next(), true)
		if err != nil {
			return err
		}
		present[key] = !null
	}
	if _, err := c.token(); err != nil { // '}'
		return err
	}
	for _, f := range s.fields {
		if f.required && !present[f.name] {
			if at, null := seen[f.name]; null {
				return invalidf("%s is required; it is null, at %s", join(path, f.name), c.pos(at))
			}
			if path == "" {
				return invalidf("%s is required; the body has none", f.name)
			}
			return invalidf("%s is required; the object at %s has none", join(path, f.name), c.pos(start))
		}
	}
	return nil
}

// unknown refuses a key the object does not have, naming the field it differs from only in case, if any.
func (c *checker) unknown(path string, s *shape, key string, at int64) error {
	names := make([]string, len(s.fields))
	for i, f := range s.fields {
		names[i] = f.name
		if strings.EqualFold(f.name, key) {
			return c.badJSON(fmt.Sprintf("unknown field %q in %s, at %s: field names are case-sensitive, did you mean %q?", key, name(path), c.pos(at), f.name))
		}
	}
	return c.badJSON(fmt.Sprintf("unknown field %q in %s, at %s (its fields are %s)", key, name(path), c.pos(at), strings.Join(names, ", ")))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// checkUTF8 refuses a string whose raw bytes are not valid UTF-8 or that escapes half a surrogate pair: Go's
// decoder would turn either into U+FFFD, publishing a character the client never sent.
func (c *checker) checkUTF8(path string, raw []byte, start int64) error {
	if !utf8.Valid(raw) {
		bad := start
		for i := 0; i < len(raw); {
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				bad = start + int64(i)
				break
			}
			i += size
		}
		return invalidf("%s is not valid UTF-8 (an invalid byte), at %s", path, c.pos(bad))
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' { // the decoder checked the escapes: raw[i+1] exists
			i++
			continue
		}
		r := hex4(raw[i+2 : i+6])
		switch {
		case utf16.IsSurrogate(r) && r < 0xdc00 && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' &&
			utf16.DecodeRune(r, hex4(raw[i+8:i+12])) != utf8.RuneError:
			i += 11 // a high surrogate and its low one: one character
		case utf16.IsSurrogate(r):
			return invalidf("%s is not valid UTF-8 (a lone surrogate escape \\u%s), at %s", path, raw[i+2:i+6], c.pos(start+int64(i)))
		default:
			i += 5
		}
	}
	return nil
}

// hex4 decodes the 4 hex digits of a \u escape (the decoder checked them).
func hex4(b []byte) rune {
	n, _ := strconv.ParseUint(string(b), 16, 32)
	return rune(n)
}
