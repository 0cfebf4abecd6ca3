package assertion

import (
	"cmp"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrCorruptRing: the key ring document in storage cannot be read. It is
// never overwritten automatically (it may come from a newer gatehouse);
// delete it to start a new ring.
var ErrCorruptRing = errors.New("assertion: corrupt key ring document")

// Limits of a ring document.
const (
	ringVersion = 1
	maxRingSize = 1 << 20
	maxRingKeys = 16
)

// ringDoc is the key ring as stored (JSON).
type ringDoc struct {
	Version int          `json:"version"`
	Keys    []ringKeyDoc `json:"keys"`
}

// ringKeyDoc is one private key of the stored ring.
type ringKeyDoc struct {
	KID        string    `json:"kid"`         // RFC 7638 thumbprint, checked on load
	Algorithm  string    `json:"alg"`         // ES256, RS256, PS256 or EdDSA
	Created    time.Time `json:"created"`     // informational
	Activates  time.Time `json:"activates"`   // signing starts then
	PrivateKey string    `json:"private_key"` // PKCS#8 PEM
}

// ring is a parsed key ring, its keys sorted by activation (then kid).
// Key i is retired when key i+1 activates.
type ring struct {
	keys []ringKey
}

type ringKey struct {
	doc  ringKeyDoc
	priv crypto.Signer
}

// parseRing reads a stored ring. Every failure wraps ErrCorruptRing.
func parseRing(data []byte) (*ring, error) {
	if len(data) > maxRingSize {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrCorruptRing, len(data), maxRingSize)
	}
	var doc ringDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptRing, err)
	}
	if doc.Version != ringVersion {
		return nil, fmt.Errorf("%w: version %d (this gatehouse reads version %d)", ErrCorruptRing, doc.Version, ringVersion)
	}
	if len(doc.Keys) == 0 || len(doc.Keys) > maxRingKeys {
		return nil, fmt.Errorf("%w: %d keys (1 to %d)", ErrCorruptRing, len(doc.Keys), maxRingKeys)
	}
	r := &ring{keys: make([]ringKey, 0, len(doc.Keys))}
	seen := make(map[string]bool, len(doc.Keys))
	for i, kd := range doc.Keys {
		if kd.Created.IsZero() || kd.Activates.IsZero() {
			return nil, fmt.Errorf("%w: key %d: no created or activates time", ErrCorruptRing, i)
		}
		priv, err := parsePrivateKeyPEM([]byte(kd.PrivateKey))
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %s", ErrCorruptRing, i, cause(err))
		}
		if !slices.Contains(algorithms, kd.Algorithm) {
			return nil, fmt.Errorf("%w: key %d: algorithm %q", ErrCorruptRing, i, kd.Algorithm)
		}
		if _, err := keyAlgorithm(priv, kd.Algorithm); err != nil {
			return nil, fmt.Errorf("%w: key %d: %s", ErrCorruptRing, i, cause(err))
		}
		kid, err := thumbprint(priv.Public())
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %s", ErrCorruptRing, i, cause(err))
		}
		if kid != kd.KID {
			return nil, fmt.Errorf("%w: key %d: kid is not the key's thumbprint", ErrCorruptRing, i)
		}
		if seen[kid] {
			return nil, fmt.Errorf("%w: key %d: duplicate kid", ErrCorruptRing, i)
		}
		seen[kid] = true
		r.keys = append(r.keys, ringKey{doc: kd, priv: priv})
	}
	r.sort()
	return r, nil
}

// cause is err's message without the package prefix, for wrapping.
func cause(err error) string { return strings.TrimPrefix(err.Error(), "assertion: ") }

// encode is the stored form of r.
func (r *ring) encode() ([]byte, error) {
	doc := ringDoc{Version: ringVersion, Keys: make([]ringKeyDoc, len(r.keys))}
	for i, k := range r.keys {
		doc.Keys[i] = k.doc
	}
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("assertion: encoding key ring: %w", err)
	}
	return append(out, '\n'), nil
}

func (r *ring) sort() {
	slices.SortStableFunc(r.keys, func(a, b ringKey) int {
		return cmp.Or(a.doc.Activates.Compare(b.doc.Activates), cmp.Compare(a.doc.KID, b.doc.KID))
	})
}

// clone copies the key list (the keys themselves are shared, never
// modified).
func (r *ring) clone() *ring { return &ring{keys: slices.Clone(r.keys)} }

// expired reports whether key i is retired (key i+1 is active) and every
// assertion it signed is past: retention after its retirement. Retention
// is the assertion lifetime plus a margin for instances that switched
// keys late.
func (r *ring) expired(i int, now time.Time, retention time.Duration) bool {
	if i+1 >= len(r.keys) {
		return false
	}
	return !now.Before(r.keys[i+1].doc.Activates.Add(retention))
}

// prune drops the expired keys and reports whether it dropped any.
func (r *ring) prune(now time.Time, retention time.Duration) bool {
	n := len(r.keys)
	keep := r.keys[:0:0]
	for i, k := range r.keys {
		if !r.expired(i, now, retention) {
			keep = append(keep, k)
		}
	}
	r.keys = keep
	return len(keep) != n
}

// rotationDue reports whether the ring needs its next key now: no key
// waits for its activation, and the newest one has been active for the
// rotation period less the publish-ahead time (the new key activates when
// the rotation period is over).
func (r *ring) rotationDue(now time.Time, period, ahead time.Duration) bool {
	newest := r.keys[len(r.keys)-1].doc.Activates
	return !now.Before(newest) && !now.Before(newest.Add(period-ahead))
}

// add generates a key of alg that activates at activates.
func (r *ring) add(alg string, now, activates time.Time) (ringKey, error) {
	priv, err := generateKey(alg)
	if err != nil {
		return ringKey{}, fmt.Errorf("assertion: generating a key: %w", err)
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return ringKey{}, err
	}
	p, err := encodePKCS8(priv)
	if err != nil {
		return ringKey{}, err
	}
	k := ringKey{priv: priv, doc: ringKeyDoc{
		KID: kid, Algorithm: alg, Created: docTime(now), Activates: docTime(activates), PrivateKey: p,
	}}
	r.keys = append(r.keys, k)
	r.sort()
	return k, nil
}

// docTime is t as stored: UTC, whole seconds, rounded up so a key never
// activates before the time asked for.
func docTime(t time.Time) time.Time {
	u := t.Round(0).UTC()
	if v := u.Truncate(time.Second); !v.Equal(u) {
		return v.Add(time.Second)
	}
	return u
}
