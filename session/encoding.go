package session

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
)

// A session is encoded compactly, since a CookieStore's cookie carries it
// on every request: a format byte, then the fields in a fixed order, each
// string length-prefixed (uvarint), each time a varint. A JWT (three
// base64url segments) is kept as its three decoded segments — a quarter
// smaller, and base64 only once, when the cookie is sealed. The whole is
// deflated when that saves a tenth (long group lists do; tokens do not).
// The provider's name, when the session has one, comes last, after a flag
// bit: sessions of a single flat provider encode as they did before.
// Sessions sealed as JSON, before this encoding, still load.
const (
	formatBinary   = 2
	formatDeflated = 3

	// Bits of the flags byte. A decoder refuses any other bit.
	flagEmailUnverified = 1 << 0
	flagProvider        = 1 << 1 // the provider's name follows Created

	tokenRaw = 0 // the token as it is
	tokenJWS = 1 // header, payload and signature, base64url-decoded

	// maxDecoded bounds what a deflated session may inflate to: a cookie
	// of at most ten chunks cannot hold more than this honestly.
	maxDecoded = 256 << 10
)

var errEncoding = errors.New("session: malformed encoding")

// marshal encodes s (see formatBinary).
func (s *Session) marshal() ([]byte, error) {
	b := make([]byte, 1, 512+len(s.AccessToken)+len(s.RefreshToken)+len(s.IDToken))
	b[0] = formatBinary
	b = appendString(b, s.ID)
	b = appendString(b, s.Subject)
	b = appendString(b, s.User)
	b = appendString(b, s.Email)
	var flags byte
	if s.EmailUnverified {
		flags |= flagEmailUnverified
	}
	if s.Provider != "" {
		flags |= flagProvider
	}
	b = append(b, flags)
	b = appendString(b, s.PreferredUsername)
	b = appendString(b, s.Name)
	b = appendStrings(b, s.Groups)
	keys := make([]string, 0, len(s.Claims))
	for k := range s.Claims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendStrings(b, s.Claims[k])
	}
	b = appendString(b, s.SID)
	b = appendToken(b, s.AccessToken)
	b = appendToken(b, s.RefreshToken)
	b = appendToken(b, s.IDToken)
	for _, t := range []int64{s.AccessExpiry, s.AccessIssued, s.LastSeen, s.Created} {
		b = binary.AppendVarint(b, t)
	}
	// Only when set, so that a session of a single flat provider encodes
	// exactly as before providers had names.
	if s.Provider != "" {
		b = appendString(b, s.Provider)
	}
	return deflateIfSmaller(b), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// appendToken appends t, as its decoded segments when it is a JWS whose
// segments are canonical base64url (so that decoding restores t exactly).
func appendToken(b []byte, t string) []byte {
	if parts := strings.Split(t, "."); len(parts) == 3 {
		var raw [3][]byte
		ok := true
		for i, p := range parts {
			var err error
			if raw[i], err = base64.RawURLEncoding.Strict().DecodeString(p); err != nil {
				ok = false
				break
			}
		}
		if ok {
			b = append(b, tokenJWS)
			for _, r := range raw {
				b = binary.AppendUvarint(b, uint64(len(r)))
				b = append(b, r...)
			}
			return b
		}
	}
	b = append(b, tokenRaw)
	return appendString(b, t)
}

var deflaters = sync.Pool{New: func() any { w, _ := flate.NewWriter(nil, flate.BestSpeed); return w }}

// deflateIfSmaller returns b deflated (formatDeflated) when that saves at
// least a tenth, else b.
func deflateIfSmaller(b []byte) []byte {
	if len(b) < 256 {
		return b
	}
	var out bytes.Buffer
	out.Grow(len(b))
	out.WriteByte(formatDeflated)
	w := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(w)
	w.Reset(&out)
	if _, err := w.Write(b[1:]); err != nil || w.Close() != nil {
		return b
	}
	if out.Len() > len(b)*9/10 {
		return b
	}
	return out.Bytes()
}

// unmarshalSession decodes a session encoded by marshal, or sealed as JSON
// before it. Anything else, or a session without an ID or subject, is
// ErrInvalid.
func unmarshalSession(b []byte) (*Session, error) {
	var s Session
	var err error
	switch {
	case len(b) == 0:
		return nil, ErrInvalid
	case b[0] == '{':
		err = json.Unmarshal(b, &s)
	case b[0] == formatBinary:
		err = s.decode(b[1:])
	case b[0] == formatDeflated:
		var plain []byte
		if plain, err = inflate(b[1:]); err == nil {
			err = s.decode(plain)
		}
	default:
		return nil, ErrInvalid
	}
	if err != nil || s.ID == "" || s.Subject == "" {
		return nil, ErrInvalid
	}
	return &s, nil
}

var inflaters = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

// inflate undoes deflateIfSmaller, up to maxDecoded bytes.
func inflate(b []byte) ([]byte, error) {
	r := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(b), nil); err != nil {
		return nil, errEncoding
	}
	out, err := io.ReadAll(io.LimitReader(r, maxDecoded+1))
	if err != nil || len(out) > maxDecoded {
		return nil, errEncoding
	}
	return out, nil
}

// decoder reads the fields marshal wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errEncoding
	}
	d.b = nil
}

// bytes returns the next length-prefixed field, without copying.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// count reads a count of items that take at least a byte each: a count
// larger than what is left is malformed (no huge allocation from a lie).
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) strings() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.string()
	}
	return ss
}

func (d *decoder) token() string {
	switch d.byte() {
	case tokenRaw:
		return d.string()
	case tokenJWS:
		segs := [3][]byte{d.bytes(), d.bytes(), d.bytes()}
		n := 2
		for _, seg := range segs {
			n += base64.RawURLEncoding.EncodedLen(len(seg))
		}
		out := make([]byte, 0, n)
		for i, seg := range segs {
			if i > 0 {
				out = append(out, '.')
			}
			out = base64.RawURLEncoding.AppendEncode(out, seg)
		}
		return string(out)
	}
	d.fail()
	return ""
}

// decode reads the fields of a binary session into s.
func (s *Session) decode(b []byte) error {
	d := &decoder{b: b}
	s.ID = d.string()
	s.Subject = d.string()
	s.User = d.string()
	s.Email = d.string()
	flags := d.byte()
	s.EmailUnverified = flags&flagEmailUnverified != 0
	s.PreferredUsername = d.string()
	s.Name = d.string()
	s.Groups = d.strings()
	if n := d.count(); n > 0 {
		s.Claims = make(map[string][]string, n)
		for range n {
			k := d.string()
			s.Claims[k] = d.strings()
		}
	}
	s.SID = d.string()
	s.AccessToken = d.token()
	s.RefreshToken = d.token()
	s.IDToken = d.token()
	s.AccessExpiry = d.varint()
	s.AccessIssued = d.varint()
	s.LastSeen = d.varint()
	s.Created = d.varint()
	if flags&flagProvider != 0 {
		// A flag with an empty name would not re-encode the same.
		if s.Provider = d.string(); s.Provider == "" {
			d.fail()
		}
	}
	if flags&^(flagEmailUnverified|flagProvider) != 0 || len(d.b) != 0 {
		d.fail()
	}
	return d.err
}
