package assertion

import (
	"context"
	"slices"
	"testing"
	"time"
)

// FuzzParseRing: any stored document either parses into a ring that
// encodes back to one with the same keys, or is ErrCorruptRing — never a
// panic.
func FuzzParseRing(f *testing.F) {
	mem := &MemoryStorage{}
	clk := newClock()
	s, err := New(context.Background(), Options{Issuer: testIssuer, Storage: mem, Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	clk.Add(DefaultRotationPeriod)
	if err := s.Refresh(context.Background()); err != nil {
		f.Fatal(err)
	}
	s.Close()
	valid, err := mem.Load(context.Background(), DefaultStorageKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(`{"version":1,"keys":[]}`))
	f.Add([]byte(`{"version":1,"keys":[{"kid":"a","alg":"ES256","created":"2030-01-01T00:00:00Z","activates":"2030-01-01T00:00:00Z","private_key":""}]}`))
	f.Add([]byte(`{"version":1,"keys":null}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRing(data)
		if err != nil {
			if r != nil {
				t.Fatal("a ring and an error")
			}
			return
		}
		if len(r.keys) == 0 {
			t.Fatal("a ring without keys")
		}
		now := epoch
		_ = r.rotationDue(now, DefaultRotationPeriod, DefaultPublishAhead)
		r.clone().prune(now, time.Hour)
		out, err := r.encode()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := parseRing(out)
		if err != nil {
			t.Fatalf("re-encoded ring does not parse: %v", err)
		}
		kidsOf := func(r *ring) []string {
			var k []string
			for _, x := range r.keys {
				k = append(k, x.doc.KID+x.doc.Activates.String())
			}
			return k
		}
		if !slices.Equal(kidsOf(r), kidsOf(r2)) {
			t.Fatalf("keys changed in a round trip: %v, %v", kidsOf(r), kidsOf(r2))
		}
	})
}

// FuzzPrivateKeyPEM: any static key data is a key or an error.
func FuzzPrivateKeyPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parsePrivateKeyPEM(data)
		if (k == nil) == (err == nil) {
			t.Fatalf("key %v, err %v", k, err)
		}
		if err == nil {
			_, _ = keyAlgorithm(k, "")
		}
	})
}
