package session

import (
	"strconv"
	"strings"
)

// Limits of the session cookie's chunks.
const (
	// chunkSize keeps name, value and attributes of each cookie under the
	// 4096 bytes browsers store per cookie.
	chunkSize = 3800
	// maxChunks bounds a session at about 37 KB of cookies; a larger one
	// is ErrTooLarge (and the Cookie header stays within server limits).
	maxChunks = 10
)

// splitChunks cuts sealed into pieces of at most size bytes.
func splitChunks(sealed string, size int) []string {
	if len(sealed) <= size {
		return []string{sealed}
	}
	chunks := make([]string, 0, (len(sealed)+size-1)/size)
	for len(sealed) > size {
		chunks = append(chunks, sealed[:size])
		sealed = sealed[size:]
	}
	if sealed != "" {
		chunks = append(chunks, sealed)
	}
	return chunks
}

// joinChunks is the inverse of splitChunks.
func joinChunks(chunks []string) string {
	if len(chunks) == 1 {
		return chunks[0]
	}
	return strings.Join(chunks, "")
}

// equalJoined reports whether s equals the concatenation of parts.
func equalJoined(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.HasPrefix(s, p) {
			return false
		}
		s = s[len(p):]
	}
	return s == ""
}

// parseChunks reads the chunk count a chunked session's first cookie
// begins with ("3.…") and checks that every chunk up to it is present
// (found[i]: the request carries chunk i). It returns the count and the
// first chunk without its prefix; a session of one cookie has no prefix.
// Chunk cookies past the count (left over, or set by a sibling domain) are
// ignored rather than spoiling a valid session. A malformed count or a
// missing chunk is ErrInvalid.
func parseChunks(first string, found []bool) (n int, rest string, err error) {
	i := strings.IndexByte(first, '.')
	if i < 0 {
		return 1, first, nil
	}
	// The count as Save writes it: digits, no sign, no leading zero.
	count, err := strconv.Atoi(first[:i])
	if err != nil || count < 2 || count > maxChunks || first[0] < '1' || first[0] > '9' || strconv.Itoa(count) != first[:i] {
		return 0, "", ErrInvalid
	}
	for j := 1; j < count; j++ {
		if !found[j] {
			return 0, "", ErrInvalid
		}
	}
	return count, first[i+1:], nil
}

// chunkIndex returns i for Name (0) and Name_i (1 ≤ i < maxChunks, no
// leading zeros), else -1.
func (c *Cookies) chunkIndex(name string) int {
	if name == c.opts.Name {
		return 0
	}
	rest, ok := strings.CutPrefix(name, c.chunkPrefix)
	if !ok || len(rest) == 0 || len(rest) > 2 || rest[0] == '0' {
		return -1
	}
	i := 0
	for _, ch := range []byte(rest) {
		if ch < '0' || ch > '9' {
			return -1
		}
		i = i*10 + int(ch-'0')
	}
	if i >= maxChunks {
		return -1
	}
	return i
}
