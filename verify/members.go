package verify

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// member is one member of a JSON object, located in the object's text:
// a token's claims are decoded one by one, and only those asked for,
// instead of all of them into a map on every verification.
type member struct {
	key, val span // key without its quotes; val as written
	plainKey bool // the key has no escapes and is valid UTF-8: its bytes are its name
}

// span is [start, end) in the text.
type span struct{ start, end uint32 }

func (s span) of(text []byte) []byte { return text[s.start:s.end] }

// objectMembers lists the members of the JSON object text, in order (a
// name given twice is listed twice), with room for size of them first.
// text must be valid JSON (json.Valid); anything but an object is
// refused.
func objectMembers(text []byte, size int) ([]member, bool) {
	if len(text) > math.MaxUint32 {
		return nil, false
	}
	i := skipSpace(text, 0)
	if i >= len(text) || text[i] != '{' {
		return nil, false
	}
	i = skipSpace(text, i+1)
	if i < len(text) && text[i] == '}' {
		return []member{}, true
	}
	members := make([]member, 0, size)
	for i < len(text) && text[i] == '"' {
		keyEnd := skipString(text, i)
		m := member{key: span{uint32(i + 1), uint32(keyEnd - 1)}, plainKey: verbatim(text[i+1 : keyEnd-1])}
		i = skipSpace(text, keyEnd)
		if i >= len(text) || text[i] != ':' {
			return nil, false
		}
		i = skipSpace(text, i+1)
		valEnd := skipValue(text, i)
		if valEnd <= i {
			return nil, false
		}
		m.val = span{uint32(i), uint32(valEnd)}
		members = append(members, m)
		i = skipSpace(text, valEnd)
		if i >= len(text) {
			return nil, false
		}
		switch text[i] {
		case ',':
			i = skipSpace(text, i+1)
		case '}':
			return members, true
		default:
			return nil, false
		}
	}
	return nil, false
}

// keyIs reports whether member m of text is named name.
func (m member) keyIs(text []byte, name string) bool {
	key := m.key.of(text)
	if m.plainKey {
		return string(key) == name
	}
	// Escapes or invalid UTF-8: compare the name encoding/json decodes
	// (escapes resolved, invalid UTF-8 replaced).
	return decodeKey(text, m) == name
}

// decodeKey returns the name of member m, as encoding/json decodes it.
func decodeKey(text []byte, m member) string {
	var name string
	_ = json.Unmarshal(text[m.key.start-1:m.key.end+1], &name)
	return name
}

// lookup returns the value of the member named name (the last one, as
// when decoding into a map) and whether there is one.
func lookup(text []byte, members []member, name string) ([]byte, bool) {
	for i := len(members) - 1; i >= 0; i-- {
		if members[i].keyIs(text, name) {
			return members[i].val.of(text), true
		}
	}
	return nil, false
}

// decodeValue decodes one JSON value of valid JSON as encoding/json
// decodes it into an interface with UseNumber: strings, json.Number,
// bools, nil, []any, map[string]any (a name given twice: its last value).
func decodeValue(v []byte) any {
	switch v[0] {
	case '"':
		s, _ := stringValue(v)
		return s
	case 't':
		return true
	case 'f':
		return false
	case 'n':
		return nil
	case '{':
		members, _ := objectMembers(v, 4)
		return decodeObject(v, members)
	case '[':
		out := make([]any, 0, 4)
		eachElement(v, func(e []byte) bool {
			out = append(out, decodeValue(e))
			return true
		})
		return out
	}
	return json.Number(v)
}

// decodeObject decodes the object text whose members are listed.
func decodeObject(text []byte, members []member) map[string]any {
	out := make(map[string]any, len(members))
	for _, m := range members {
		name := ""
		if m.plainKey {
			name = string(m.key.of(text))
		} else {
			name = decodeKey(text, m)
		}
		out[name] = decodeValue(m.val.of(text))
	}
	return out
}

// eachElement calls f with each element of the JSON array v (valid
// JSON), in order, until f returns false.
func eachElement(v []byte, f func(elem []byte) bool) {
	i := skipSpace(v, 1)
	if i >= len(v) || v[i] == ']' {
		return
	}
	for i < len(v) {
		end := skipValue(v, i)
		if end <= i || !f(v[i:end]) {
			return
		}
		if i = skipSpace(v, end); i >= len(v) || v[i] != ',' {
			return
		}
		i = skipSpace(v, i+1)
	}
}

// stringValue decodes v when it is a JSON string.
func stringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if inner := v[1 : len(v)-1]; verbatim(inner) {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// stringsValue decodes v when it is a JSON array of strings, or a string
// that one turns into the list.
func stringsValue(v []byte, one func(string) []string) ([]string, bool) {
	if v[0] == '"' {
		s, ok := stringValue(v)
		return one(s), ok
	}
	if v[0] != '[' {
		return nil, false
	}
	out, ok := make([]string, 0, 4), true
	eachElement(v, func(e []byte) bool {
		var s string
		s, ok = stringValue(e)
		out = append(out, s)
		return ok
	})
	if !ok {
		return nil, false
	}
	return out, true
}

// numericDate decodes v as a NumericDate: a finite, non-negative JSON
// number of seconds, possibly fractional, before the year 10000.
func numericDate(v []byte) (float64, bool) {
	if c := v[0]; c != '-' && (c < '0' || c > '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f >= 253402300800 {
		return 0, false
	}
	return f, true
}

// verbatim reports whether b, the body of a JSON string in valid JSON (so
// without control characters), is its own value: no escapes, and valid
// UTF-8 (encoding/json replaces invalid bytes).
func verbatim(b []byte) bool {
	return bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b)
}

func skipSpace(text []byte, i int) int {
	for i < len(text) {
		switch text[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string starting at text[i].
func skipString(text []byte, i int) int {
	for i++; i < len(text); i++ {
		switch text[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(text)
}

// skipValue returns the index just past the value starting at text[i]
// (valid JSON: nesting is balanced, literals end at a delimiter).
func skipValue(text []byte, i int) int {
	if i >= len(text) {
		return i
	}
	switch text[i] {
	case '"':
		return skipString(text, i)
	case '{', '[':
		depth := 0
		for i < len(text) {
			switch text[i] {
			case '"':
				i = skipString(text, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(text) {
		switch text[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}
