package session

import (
	"crypto/aes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/gorilla/securecookie"
)

// MinSecretLength is the shortest cookie secret NewCodec accepts, in bytes.
const MinSecretLength = 32

// Codec seals values (AES-256-CTR encryption plus HMAC-SHA256 authentication,
// by gorilla/securecookie) with keys derived from one or more secrets. The
// first secret seals; every secret unseals, so secrets can be rotated without
// logging anyone out.
type Codec struct {
	codecs []*securecookie.SecureCookie
	maxLen int
}

// NewCodec derives, with HKDF-SHA256, an encryption key and an authentication
// key for purpose from each secret. Different purposes get unrelated keys, so
// a value sealed for one purpose never unseals for another. maxLen caps the
// length of a sealed value, on sealing and before any work on unsealing.
func NewCodec(purpose string, secrets [][]byte, maxLen int) (*Codec, error) {
	if purpose == "" {
		return nil, errors.New("session: codec purpose is empty")
	}
	if len(secrets) == 0 {
		return nil, errors.New("session: at least one secret is required")
	}
	if maxLen <= 0 {
		return nil, errors.New("session: codec length limit must be positive")
	}
	c := &Codec{maxLen: maxLen}
	for i, secret := range secrets {
		if len(secret) < MinSecretLength {
			return nil, fmt.Errorf("session: secret %d is %d bytes, shorter than %d", i+1, len(secret), MinSecretLength)
		}
		hashKey, err := hkdf.Key(sha256.New, secret, nil, "gatehouse/v1/"+purpose+"/hmac-sha256", 32)
		if err != nil {
			return nil, fmt.Errorf("session: deriving keys: %w", err)
		}
		blockKey, err := hkdf.Key(sha256.New, secret, nil, "gatehouse/v1/"+purpose+"/aes-256", 32)
		if err != nil {
			return nil, fmt.Errorf("session: deriving keys: %w", err)
		}
		sc := securecookie.New(hashKey, blockKey).
			BlockFunc(aes.NewCipher).
			SetSerializer(securecookie.NopEncoder{}).
			MaxLength(0). // checked by Seal and Unseal, with errors of our own
			MaxAge(0)     // lifetimes are enforced from data inside the sealed value, with an injectable clock
		c.codecs = append(c.codecs, sc)
	}
	return c, nil
}

// Seal encrypts and authenticates plaintext, bound to name (a value sealed
// under one name does not unseal under another). plaintext is not modified.
// A result longer than the codec's limit is ErrTooLarge.
func (c *Codec) Seal(name string, plaintext []byte) (string, error) {
	// securecookie encrypts in place; hand it a copy.
	buf := append([]byte(nil), plaintext...)
	s, err := c.codecs[0].Encode(name, buf)
	if err != nil {
		return "", fmt.Errorf("session: sealing: %w", err)
	}
	if len(s) > c.maxLen {
		return "", ErrTooLarge
	}
	return s, nil
}

// Unseal authenticates and decrypts a value sealed under name. keyIndex tells
// which secret unsealed it (0 is the current one). Any failure is ErrInvalid,
// including a value in any but the canonical encoding Seal writes: the
// outer base64 is not covered by the MAC, and a changed padding bit or an
// inserted line break would decode to the same bytes.
func (c *Codec) Unseal(name, sealed string) (plaintext []byte, keyIndex int, err error) {
	if len(sealed) > c.maxLen {
		return nil, 0, ErrInvalid
	}
	// Strict refuses non-zero padding bits; line breaks it still skips.
	if strings.ContainsAny(sealed, "\r\n") {
		return nil, 0, ErrInvalid
	}
	if _, err := base64.URLEncoding.Strict().DecodeString(sealed); err != nil {
		return nil, 0, ErrInvalid
	}
	for i, sc := range c.codecs {
		var out []byte
		if sc.Decode(name, sealed, &out) == nil {
			return out, i, nil
		}
	}
	return nil, 0, ErrInvalid
}
