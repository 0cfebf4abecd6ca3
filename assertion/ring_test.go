package assertion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// certmagic.Storage, which Caddy hands its modules, is a Storage.
var _ Storage = certmagic.Storage(nil)

// faultyStorage fails the operations named in fail.
type faultyStorage struct {
	Storage
	mu   sync.Mutex
	fail map[string]bool
}

func (s *faultyStorage) failing(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail[op] {
		return fmt.Errorf("%s: storage unavailable", op)
	}
	return nil
}

func (s *faultyStorage) set(op string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail == nil {
		s.fail = map[string]bool{}
	}
	s.fail[op] = fail
}

func (s *faultyStorage) Lock(ctx context.Context, name string) error {
	if err := s.failing("lock"); err != nil {
		return err
	}
	return s.Storage.Lock(ctx, name)
}

func (s *faultyStorage) Store(ctx context.Context, key string, v []byte) error {
	if err := s.failing("store"); err != nil {
		return err
	}
	return s.Storage.Store(ctx, key, v)
}

func (s *faultyStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.failing("load"); err != nil {
		return nil, err
	}
	return s.Storage.Load(ctx, key)
}

// lockFree reports whether the ring's storage lock can be taken at once.
func lockFree(t *testing.T, st Storage) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := st.Lock(ctx, DefaultStorageKey); err != nil {
		return false
	}
	if err := st.Unlock(context.Background(), DefaultStorageKey); err != nil {
		t.Fatal(err)
	}
	return true
}

// TestRingFailures: a storage that fails or holds a damaged ring gives a
// clear error; a running Signer keeps signing with the keys it has, and a
// damaged document is never overwritten.
func TestRingFailures(t *testing.T) {
	t.Run("load fails at start", func(t *testing.T) {
		st := &faultyStorage{Storage: &MemoryStorage{}}
		st.set("load", true)
		_, err := New(context.Background(), Options{Issuer: testIssuer, Storage: st})
		if err == nil || !contains(err, "loading the key ring") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("lock fails at creation", func(t *testing.T) {
		st := &faultyStorage{Storage: &MemoryStorage{}}
		st.set("lock", true)
		_, err := New(context.Background(), Options{Issuer: testIssuer, Storage: st})
		if err == nil || !contains(err, "locking the key ring") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("store fails at creation, lock released", func(t *testing.T) {
		mem := &MemoryStorage{}
		st := &faultyStorage{Storage: mem}
		st.set("store", true)
		_, err := New(context.Background(), Options{Issuer: testIssuer, Storage: st})
		if err == nil || !contains(err, "storing the key ring") {
			t.Errorf("err = %v", err)
		}
		if !lockFree(t, mem) {
			t.Error("the storage lock is still held")
		}
	})
	t.Run("rotation fails at start", func(t *testing.T) {
		clk := newClock()
		mem := &MemoryStorage{}
		newRingSigner(t, mem, clk).Close()
		clk.Add(DefaultRotationPeriod)
		st := &faultyStorage{Storage: mem}
		st.set("lock", true)
		s := newRingSigner(t, st, clk) // the ring is there: it starts
		tok := token(t, s, "", claims2(clk))
		if _, err := verifyJWX(s.JWKS(), tok, clk.Now()); err != nil {
			t.Error(err)
		}
		if err := s.Refresh(context.Background()); err == nil || !contains(err, "locking") {
			t.Errorf("Refresh = %v", err)
		}
	})
	t.Run("damaged at refresh", func(t *testing.T) {
		clk := newClock()
		mem := &MemoryStorage{}
		s := newRingSigner(t, mem, clk)
		jwks := s.JWKS()
		damaged := []byte(`{"version":1,"keys":[{"kid":"abc","alg":"ES256","private_key":"-----BEGIN`)
		if err := mem.Store(context.Background(), DefaultStorageKey, damaged); err != nil {
			t.Fatal(err)
		}
		for _, d := range []time.Duration{0, DefaultRotationPeriod} { // also when rotation is due
			clk.Add(d)
			err := s.Refresh(context.Background())
			if !errors.Is(err, ErrCorruptRing) || !contains(err, DefaultStorageKey) {
				t.Errorf("Refresh = %v, want ErrCorruptRing naming the storage key", err)
			}
			tok := token(t, s, "", claims2(clk))
			if _, err := verifyJWX(jwks, tok, clk.Now()); err != nil {
				t.Errorf("after a failed refresh: %v", err)
			}
			if got, _ := mem.Load(context.Background(), DefaultStorageKey); string(got) != string(damaged) {
				t.Error("the damaged document was overwritten")
			}
		}
	})
	t.Run("deleted at refresh", func(t *testing.T) {
		clk := newClock()
		mem := &MemoryStorage{}
		s := newRingSigner(t, mem, clk)
		want := storedKids(t, mem)
		if err := mem.Delete(context.Background(), DefaultStorageKey); err != nil {
			t.Fatal(err)
		}
		refresh(t, s)
		if got := storedKids(t, mem); !slices.Equal(got, want) {
			t.Errorf("written back %v, want the keys in use %v", got, want)
		}
	})
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// claims2 is claims() valid for a week after clk's time.
func claims2(clk *clock) Claims {
	c := claims()
	c.NotAfter = clk.Now().Add(7 * 24 * time.Hour)
	return c
}

// TestRotation walks one key through its life: published ahead, signing,
// retired but published while its assertions live, then gone.
func TestRotation(t *testing.T) {
	clk := newClock()
	mem := &MemoryStorage{}
	s := newRingSigner(t, mem, clk)
	k1 := kids(t, s.JWKS())
	if len(k1) != 1 {
		t.Fatalf("a new ring publishes %v", k1)
	}
	signedWith := func() string { return headerOf(t, token(t, s, "", claims2(clk))).Kid }
	if got := signedWith(); got != k1[0] {
		t.Fatalf("signed with %s, want %s", got, k1[0])
	}

	// Not yet due.
	clk.Set(epoch.Add(DefaultRotationPeriod - DefaultPublishAhead - time.Second))
	refresh(t, s)
	if got := kids(t, s.JWKS()); !slices.Equal(got, k1) {
		t.Fatalf("rotated early: %v", got)
	}

	// Due: a second key is published, and not used yet.
	clk.Set(epoch.Add(DefaultRotationPeriod - DefaultPublishAhead))
	refresh(t, s)
	both := kids(t, s.JWKS())
	if len(both) != 2 || both[0] != k1[0] {
		t.Fatalf("after rotation JWKS has %v", both)
	}
	k2 := both[1]
	if got := storedKids(t, mem); !slices.Equal(got, both) {
		t.Errorf("stored ring %v, want %v", got, both)
	}
	if st := s.Stats(); st.Rotations != 1 {
		t.Errorf("rotations = %d", st.Rotations)
	}
	refresh(t, s) // a pending key: nothing more to do
	if got := kids(t, s.JWKS()); !slices.Equal(got, both) {
		t.Fatalf("rotated twice: %v", got)
	}

	// Just before activation: the old key signs, also from the cache.
	activation := epoch.Add(DefaultRotationPeriod)
	clk.Set(activation.Add(-time.Second))
	if got := signedWith(); got != k1[0] {
		t.Errorf("signed with %s before activation", got)
	}
	c := claims2(clk)
	old := token(t, s, "session-1", c)

	// At activation, without any refresh: the new key signs, and the
	// cached assertion of the old key is replaced.
	clk.Set(activation)
	if got := signedWith(); got != k2 {
		t.Errorf("signed with %s at activation, want %s", got, k2)
	}
	if tok := token(t, s, "session-1", c); headerOf(t, tok).Kid != k2 {
		t.Error("a cached assertion of the retired key was served after activation")
	}
	// The assertion signed just before verifies against the JWKS served
	// after the rotation.
	refresh(t, s)
	clk.Set(activation.Add(DefaultLifetime - 2*time.Second))
	refresh(t, s)
	if _, err := verifyJWX(s.JWKS(), old, clk.Now()); err != nil {
		t.Errorf("an assertion of the retired key: %v", err)
	}
	if _, err := verifyStdlib(s.JWKS(), old, clk.Now()); err != nil {
		t.Errorf("an assertion of the retired key (stdlib): %v", err)
	}

	// The retired key stays until its last assertion is past, plus the
	// margin, then goes from the JWKS and from the stored ring.
	gone := activation.Add(DefaultLifetime + DefaultPublishAhead)
	clk.Set(gone.Add(-time.Second))
	refresh(t, s)
	if got := kids(t, s.JWKS()); !slices.Equal(got, both) {
		t.Errorf("JWKS %v before the retired key expired", got)
	}
	clk.Set(gone)
	refresh(t, s)
	if got := kids(t, s.JWKS()); !slices.Equal(got, []string{k2}) {
		t.Errorf("JWKS %v after the retired key expired, want [%s]", got, k2)
	}
	if got := storedKids(t, mem); !slices.Equal(got, []string{k2}) {
		t.Errorf("stored ring %v after the retired key expired", got)
	}

	// And the next rotation, a period after the second key activated.
	clk.Set(activation.Add(DefaultRotationPeriod - DefaultPublishAhead))
	refresh(t, s)
	if got := kids(t, s.JWKS()); len(got) != 2 || got[0] != k2 {
		t.Errorf("second rotation: %v", got)
	}
}

// TestTwoInstances: two Signers sharing a storage are two instances behind
// a load balancer. Each one's assertions verify against the other's JWKS,
// across a rotation that one performs and the other picks up when it
// refreshes.
func TestTwoInstances(t *testing.T) {
	clk := newClock()
	mem := &MemoryStorage{}
	a := newRingSigner(t, mem, clk)
	b := newRingSigner(t, mem, clk)
	cross := func(when string) {
		t.Helper()
		for _, from := range []*Signer{a, b} {
			tok := token(t, from, "", claims2(clk))
			for _, to := range []*Signer{a, b} {
				if _, err := verifyJWX(to.JWKS(), tok, clk.Now()); err != nil {
					t.Errorf("%s: jwx: %v", when, err)
				}
				if _, err := verifyStdlib(to.JWKS(), tok, clk.Now()); err != nil {
					t.Errorf("%s: stdlib: %v", when, err)
				}
			}
		}
	}
	same := func(when string) {
		t.Helper()
		pa, pb := a.Published(), b.Published()
		if string(pa.JWKS) != string(pb.JWKS) || pa.ETag != pb.ETag {
			t.Errorf("%s: the instances publish different JWKS", when)
		}
	}
	same("start")
	cross("start")

	clk.Set(epoch.Add(DefaultRotationPeriod - DefaultPublishAhead))
	refresh(t, a)
	if len(kids(t, a.JWKS())) != 2 || len(kids(t, b.JWKS())) != 1 {
		t.Fatal("a did not rotate, or b changed without a refresh")
	}
	cross("a rotated, b not refreshed") // the new key does not sign yet
	refresh(t, b)
	same("b refreshed")
	if a.Stats().Rotations+b.Stats().Rotations != 1 {
		t.Errorf("rotations: a %d, b %d", a.Stats().Rotations, b.Stats().Rotations)
	}
	clk.Set(epoch.Add(DefaultRotationPeriod - time.Second))
	old := token(t, b, "", claims2(clk))

	clk.Set(epoch.Add(DefaultRotationPeriod))
	cross("after activation")
	if ka, kb := headerOf(t, token(t, a, "", claims2(clk))).Kid, headerOf(t, token(t, b, "", claims2(clk))).Kid; ka != kb {
		t.Errorf("the instances sign with %s and %s", ka, kb)
	}
	if _, err := verifyJWX(a.JWKS(), old, clk.Now()); err != nil {
		t.Errorf("b's assertion from before activation at a: %v", err)
	}
}

// TestConcurrentMaintenance: instances that find the ring missing or due at
// the same time create or rotate it once, under the storage lock — with
// certmagic's file storage as Caddy uses it, and in memory.
func TestConcurrentMaintenance(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n          int // instances
		newStorage func(t *testing.T) Storage
	}{
		{"memory", 6, func(*testing.T) Storage { return &MemoryStorage{} }},
		// Waiting for a file lock polls once a second: two instances.
		{"certmagic file", 2, func(t *testing.T) Storage { return &certmagic.FileStorage{Path: t.TempDir()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			st := tc.newStorage(t)
			n := tc.n
			signers := make([]*Signer, n)
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					signers[i], errs[i] = New(context.Background(), Options{Issuer: testIssuer, Storage: st, Now: clk.Now})
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(signers[i].Close)
			}
			first := kids(t, signers[0].JWKS())
			for _, s := range signers {
				if got := kids(t, s.JWKS()); len(got) != 1 || !slices.Equal(got, first) {
					t.Fatalf("instances started with different rings: %v, %v", first, got)
				}
			}

			clk.Set(epoch.Add(DefaultRotationPeriod - DefaultPublishAhead))
			for _, s := range signers {
				wg.Go(func() {
					if err := s.Refresh(context.Background()); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			var rotations uint64
			for _, s := range signers {
				rotations += s.Stats().Rotations
			}
			if rotations != 1 {
				t.Errorf("%d rotations", rotations)
			}
			want := kids(t, signers[0].JWKS())
			if len(want) != 2 {
				t.Fatalf("JWKS %v after rotation", want)
			}
			for _, s := range signers {
				if got := kids(t, s.JWKS()); !slices.Equal(got, want) {
					t.Errorf("JWKS %v, want %v", got, want)
				}
			}
		})
	}
}

// TestCloseStopsGoroutines: Close (or the end of the lifecycle context)
// stops the background refresh; nothing is left behind.
func TestCloseStopsGoroutines(t *testing.T) {
	mem := &MemoryStorage{}
	clk := newClock()
	before := runtime.NumGoroutine()
	for range 20 {
		s, err := New(context.Background(), Options{Issuer: testIssuer, Storage: mem, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		token(t, s, "k", claims())
		s.Close()
		s.Close()
		token(t, s, "k", claims()) // still signs with the keys it has
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Options{Issuer: testIssuer, Storage: mem, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh goroutine outlived its context")
	}
	var after int
	for range 100 {
		after = runtime.NumGoroutine()
		if after <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("goroutines: %d before, %d after closing 21 signers", before, after)
}

// TestRefreshLoop: the background goroutine refreshes on its own.
func TestRefreshLoop(t *testing.T) {
	clk := newClock()
	st := &countingStorage{Storage: &MemoryStorage{}}
	s := newRingSigner(t, st, clk, func(o *Options) { o.RefreshInterval = time.Millisecond })
	before := st.calls.Load()
	for range 1000 {
		if st.calls.Load() > before {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.Close()
	if st.calls.Load() == before {
		t.Error("the background refresh never loaded the ring")
	}
	n := st.calls.Load()
	time.Sleep(5 * time.Millisecond)
	if st.calls.Load() != n {
		t.Error("the background refresh went on after Close")
	}
}

// TestParseRingRefuses: every kind of damage to a ring document is
// ErrCorruptRing with a message saying what is wrong.
func TestParseRingRefuses(t *testing.T) {
	r := &ring{}
	for _, alg := range []string{"ES256", "EdDSA"} {
		if _, err := r.add(alg, epoch, epoch); err != nil {
			t.Fatal(err)
		}
	}
	good, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseRing(good); err != nil {
		t.Fatalf("a good ring: %v", err)
	}
	rsaPEM := string(pemPKCS8(t, mustRSA(t, 2048)))
	edit := func(f func(d *ringDoc)) []byte {
		var d ringDoc
		if err := json.Unmarshal(good, &d); err != nil {
			t.Fatal(err)
		}
		f(&d)
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name string
		doc  []byte
		want string
	}{
		{"empty", nil, "unexpected end"},
		{"not an object", []byte(`[1]`), "cannot unmarshal"},
		{"trailing data", append(slices.Clone(good), "{}"...), "invalid character"},
		{"too large", make([]byte, maxRingSize+1), "bytes"},
		{"no version", edit(func(d *ringDoc) { d.Version = 0 }), "version 0"},
		{"newer version", edit(func(d *ringDoc) { d.Version = 2 }), "version 2"},
		{"no keys", edit(func(d *ringDoc) { d.Keys = nil }), "0 keys"},
		{"too many keys", edit(func(d *ringDoc) {
			for len(d.Keys) <= maxRingKeys {
				d.Keys = append(d.Keys, d.Keys[0])
			}
		}), "17 keys"},
		{"duplicate kid", edit(func(d *ringDoc) { d.Keys[1] = d.Keys[0] }), "duplicate kid"},
		{"wrong kid", edit(func(d *ringDoc) { d.Keys[0].KID = d.Keys[1].KID }), "thumbprint"},
		{"no activation", edit(func(d *ringDoc) { d.Keys[0].Activates = time.Time{} }), "activates"},
		{"no creation", edit(func(d *ringDoc) { d.Keys[1].Created = time.Time{} }), "created"},
		{"unknown alg", edit(func(d *ringDoc) { d.Keys[0].Algorithm = "ES384" }), `algorithm "ES384"`},
		{"alg none", edit(func(d *ringDoc) { d.Keys[0].Algorithm = "none" }), `algorithm "none"`},
		{"alg of another key type", edit(func(d *ringDoc) { d.Keys[0].Algorithm = "RS256" }), "the key signs"},
		{"another key under the kid", edit(func(d *ringDoc) { d.Keys[0].PrivateKey = rsaPEM; d.Keys[0].Algorithm = "RS256" }), "thumbprint"},
		{"no private key", edit(func(d *ringDoc) { d.Keys[0].PrivateKey = "" }), "no PEM data"},
		{"damaged private key", edit(func(d *ringDoc) { d.Keys[0].PrivateKey = d.Keys[0].PrivateKey[:60] }), "no PEM data"},
		{"bad time", []byte(strings.Replace(string(good), `"activates": "`, `"activates": "x`, 1)), "parsing time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseRing(tc.doc)
			if !errors.Is(err, ErrCorruptRing) || r != nil {
				t.Fatalf("parseRing = %v, %v; want ErrCorruptRing", r, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("err quotes key material: %q", err)
			}
		})
	}
}

// TestMemoryStorage: the lock waits, honours its context and is released
// once; a missing key is fs.ErrNotExist.
func TestMemoryStorage(t *testing.T) {
	var m MemoryStorage
	ctx := context.Background()
	if _, err := m.Load(ctx, "a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing key: %v", err)
	}
	if err := m.Unlock(ctx, "l"); err == nil {
		t.Error("Unlock of a lock not held")
	}
	if err := m.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := m.Lock(short, "l"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock of a held lock: %v", err)
	}
	got := make(chan error)
	go func() { got <- m.Lock(ctx, "l") }()
	if err := m.Unlock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("the waiting Lock: %v", err)
	}
	v := []byte("v")
	if err := m.Store(ctx, "a", v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'x'
	if b, err := m.Load(ctx, "a"); err != nil || string(b) != "v" {
		t.Errorf("Load = %q, %v", b, err)
	}
}
