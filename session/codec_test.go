package session

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestNewCodecRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets [][]byte
	}{
		{"no secrets", nil},
		{"short secret", [][]byte{[]byte("too short")}},
		{"31 bytes", [][]byte{bytes.Repeat([]byte("x"), 31)}},
		{"second secret short", [][]byte{secretA, []byte("short")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewCodec("session", tc.secrets, 4096); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewCodec("session", [][]byte{bytes.Repeat([]byte("x"), 32)}, 4096); err != nil {
		t.Fatalf("32-byte secret refused: %v", err)
	}
}

func TestSealUnsealRoundTrip(t *testing.T) {
	c, err := NewCodec("session", [][]byte{secretA}, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 15, 16, 17, 1000, 20000} {
		plain := bytes.Repeat([]byte{0xA5}, size)
		orig := append([]byte(nil), plain...)
		sealed, err := c.Seal("_gatehouse", plain)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(plain, orig) {
			t.Fatalf("size %d: Seal modified its input", size)
		}
		got, idx, err := c.Unseal("_gatehouse", sealed)
		if err != nil || idx != 0 || !bytes.Equal(got, plain) {
			t.Fatalf("size %d: round trip failed: idx=%d err=%v", size, idx, err)
		}
		if _, _, err := c.Unseal("_other", sealed); !errors.Is(err, ErrInvalid) {
			t.Fatalf("size %d: unsealed under another name: %v", size, err)
		}
	}
}

func TestSealIsEncrypted(t *testing.T) {
	c, _ := NewCodec("session", [][]byte{secretA}, 1<<16)
	sealed, _ := c.Seal("n", []byte("at-secret-token-value"))
	if strings.Contains(sealed, "at-secret") {
		t.Fatal("plaintext visible in the sealed value")
	}
	again, _ := c.Seal("n", []byte("at-secret-token-value"))
	if sealed == again {
		t.Fatal("sealing is deterministic (IV reuse)")
	}
}

func TestPurposesAreSeparate(t *testing.T) {
	s, _ := NewCodec("session", [][]byte{secretA}, 1<<16)
	l, _ := NewCodec("login", [][]byte{secretA}, 1<<16)
	sealed, _ := s.Seal("n", []byte("x"))
	if _, _, err := l.Unseal("n", sealed); err == nil {
		t.Fatal("a session value unsealed with the login keys")
	}
}
