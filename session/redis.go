package session

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/rueidis"
)

// Defaults of RedisStoreOptions.
const (
	DefaultRedisPrefix   = "gatehouse:"
	DefaultRedisCacheTTL = time.Minute
)

// RedisStoreOptions configures a RedisStore.
type RedisStoreOptions struct {
	// Client talks to Redis. Client-side caching should stay on (the
	// rueidis default): Load then answers from memory, and Redis
	// invalidates the cached entry on every instance when the session
	// changes or ends. Give it one pipelined connection
	// (PipelineMultiplex -1): Redis then sends the invalidation of a cached
	// session ahead of the reply to this instance's own write, so the
	// instance reads its own writes at once. Required.
	Client rueidis.Client
	// Prefix starts every key. Default "gatehouse:".
	Prefix string
	// Namespace keeps the sessions of different logins (issuer, client,
	// cookie) apart in one Redis; gatehouse passes the cookie binding.
	Namespace string
	// CacheTTL bounds how long a session read stays in the client-side
	// cache without Redis invalidating it. Default 1m.
	CacheTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// RedisStore keeps sessions in Redis, shared by every instance that uses
// the same Redis and the same secrets. The cookie carries only a handle:
// the session ID and a random per-session key. The session (identity and
// tokens) is stored encrypted with that key (AES-256-GCM), so a Redis dump,
// or whoever reads Redis, learns no token and can replay no session.
// Sessions expire in Redis when their lifetime ends.
//
// Sign-out and back-channel logout delete the session from Redis: every
// instance refuses its cookie from the next request on. RedisStore also
// coordinates refreshes across instances (TryLease, AwaitRefresh), so a
// rotating refresh token is spent once, whichever instance serves.
type RedisStore struct {
	opts   RedisStoreOptions
	prefix string // Prefix + namespace tag + ":"
	// decoded spares decrypting and decoding a session read before: it is
	// keyed by session ID and hits only for the very bytes Redis holds.
	decoded *lru.Cache[string, decodedRecord]
}

type decodedRecord struct {
	record string
	key    [recordKeyLen]byte
	sess   *Session
}

const (
	handleVersion = 1
	recordKeyLen  = 32
	// maxHandleID bounds the session ID a handle may carry.
	maxHandleID = 64
)

// NewRedisStore returns a RedisStore on opts.Client. It does not contact
// Redis: a Redis that cannot be reached fails requests (ErrUnavailable)
// until it can.
func NewRedisStore(opts RedisStoreOptions) (*RedisStore, error) {
	if opts.Client == nil {
		return nil, errors.New("session: a Redis client is required")
	}
	opts.Prefix = cmp.Or(opts.Prefix, DefaultRedisPrefix)
	opts.CacheTTL = cmp.Or(opts.CacheTTL, DefaultRedisCacheTTL)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tag := sha256.Sum256([]byte(opts.Namespace))
	s := &RedisStore{opts: opts, prefix: opts.Prefix + base64.RawURLEncoding.EncodeToString(tag[:6]) + ":"}
	s.decoded, _ = lru.New[string, decodedRecord](DefaultCacheSize) // fails only for a size ≤ 0
	return s, nil
}

func (s *RedisStore) recordKey(id string) string { return s.prefix + "s:" + id }
func (s *RedisStore) leaseKey(id string) string  { return s.prefix + "lease:" + id }

// indexKey names the set of sessions of a provider session ("sid") or a
// subject ("sub"); the value is hashed: Redis holds no user names.
func (s *RedisStore) indexKey(kind, value string) string {
	sum := sha256.Sum256([]byte(value))
	return s.prefix + kind + ":" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// providerIndexKey is indexKey for a provider session or subject of the
// named provider: two providers may both know a subject "123" or a sid
// "abc". The provider "" (one provider written flat) has the keys it had
// before providers had names; a named one hashes its name (length-prefixed,
// so no name and value run into another's) with the value.
func (s *RedisStore) providerIndexKey(provider, kind, value string) string {
	if provider == "" {
		return s.indexKey(kind, value)
	}
	return s.indexKey("p"+kind, strconv.Itoa(len(provider))+":"+provider+value)
}

// unavailable wraps a Redis failure.
func unavailable(err error) error { return fmt.Errorf("%w: %w", ErrUnavailable, err) }

// Save encrypts sess with its per-session key (a new one for a new
// session), stores it until until and indexes it by provider session and
// subject for back-channel logout. It ends a refresh lease on the session:
// the refreshed tokens are there for whoever waited. The returned handle
// stays the same for the whole session.
func (s *RedisStore) Save(ctx context.Context, sess *Session, until time.Time) ([]byte, error) {
	now := s.opts.Now()
	ttl := until.Sub(now)
	if ttl < time.Millisecond {
		return nil, ErrExpired
	}
	if len(sess.ID) == 0 || len(sess.ID) > maxHandleID {
		return nil, errors.New("session: a session ID of 1 to 64 bytes is required")
	}
	key := sess.storeKey
	if len(key) != recordKeyLen {
		key = make([]byte, recordKeyLen)
		rand.Read(key)
	}
	plain, err := sess.marshal()
	if err != nil {
		return nil, fmt.Errorf("session: encoding: %w", err)
	}
	recordKey := s.recordKey(sess.ID)
	record, err := seal(key, plain, recordKey)
	if err != nil {
		return nil, err
	}
	// The indexes live as long as the longest session they may name.
	lifetime := until.Sub(time.Unix(sess.Created, 0))
	b := s.opts.Client.B()
	cmds := rueidis.Commands{
		b.Set().Key(recordKey).Value(rueidis.BinaryString(record)).PxMilliseconds(ttl.Milliseconds()).Build(),
		b.Del().Key(s.leaseKey(sess.ID)).Build(),
	}
	for _, idx := range s.indexesOf(sess) {
		cmds = append(cmds,
			b.Zadd().Key(idx).ScoreMember().ScoreMember(float64(sess.Created), sess.ID).Build(),
			b.Pexpire().Key(idx).Milliseconds(lifetime.Milliseconds()).Build())
	}
	for _, res := range s.opts.Client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return nil, unavailable(err)
		}
	}
	handle := make([]byte, 0, 1+recordKeyLen+len(sess.ID))
	handle = append(handle, handleVersion)
	handle = append(handle, key...)
	return append(handle, sess.ID...), nil
}

// indexesOf returns the index keys sess belongs in.
func (s *RedisStore) indexesOf(sess *Session) []string {
	idx := make([]string, 0, 2)
	if sess.SID != "" {
		idx = append(idx, s.providerIndexKey(sess.Provider, "sid", sess.SID))
	}
	return append(idx, s.providerIndexKey(sess.Provider, "sub", sess.Subject))
}

// parseHandle splits a cookie value into session ID and key.
func parseHandle(value []byte) (id string, key [recordKeyLen]byte, err error) {
	if len(value) < 2+recordKeyLen || len(value) > 1+recordKeyLen+maxHandleID || value[0] != handleVersion {
		return "", key, ErrInvalid
	}
	copy(key[:], value[1:])
	return string(value[1+recordKeyLen:]), key, nil
}

// Load reads the session a handle names, from the client-side cache when
// Redis has not invalidated it. A session Redis does not have (expired,
// signed out, ended by the provider) is ErrNoSession; a Redis that cannot
// be reached is ErrUnavailable.
func (s *RedisStore) Load(ctx context.Context, value []byte) (*Session, error) {
	id, key, err := parseHandle(value)
	if err != nil {
		return nil, err
	}
	return s.load(ctx, id, key, true)
}

// load reads and decodes a session: from the client-side cache when
// cached, else from Redis itself.
func (s *RedisStore) load(ctx context.Context, id string, key [recordKeyLen]byte, cached bool) (*Session, error) {
	recordKey := s.recordKey(id)
	var res rueidis.RedisResult
	if cached {
		res = s.opts.Client.DoCache(ctx, s.opts.Client.B().Get().Key(recordKey).Cache(), s.opts.CacheTTL)
	} else {
		res = s.opts.Client.Do(ctx, s.opts.Client.B().Get().Key(recordKey).Build())
	}
	record, err := res.ToString()
	if rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("%w: not in the session store", ErrNoSession)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	if d, ok := s.decoded.Get(id); ok && d.record == record && subtle.ConstantTimeCompare(d.key[:], key[:]) == 1 {
		return d.sess, nil
	}
	plain, err := open(key[:], record, recordKey)
	if err != nil {
		return nil, ErrInvalid // a handle with the wrong key
	}
	sess, err := unmarshalSession(plain)
	if err != nil || sess.ID != id {
		return nil, ErrInvalid
	}
	sess.storeKey = key[:]
	s.decoded.Add(id, decodedRecord{record: record, key: key, sess: sess})
	return sess, nil
}

// Revoke deletes the session: every instance refuses its cookie from now on.
func (s *RedisStore) Revoke(ctx context.Context, id string, _ time.Time) error {
	if err := s.opts.Client.Do(ctx, s.opts.Client.B().Del().Key(s.recordKey(id)).Build()).Error(); err != nil {
		return unavailable(err)
	}
	s.decoded.Remove(id)
	return nil
}

// Revoked is always false: a revoked session is deleted, and Load, which
// just read it, found it.
func (s *RedisStore) Revoked(context.Context, *Session) (bool, error) { return false, nil }

// EndProviderSession deletes every session of l.Provider's provider
// session (or subject) created at or before l.At.
func (s *RedisStore) EndProviderSession(ctx context.Context, l ProviderLogout) error {
	idx := s.providerIndexKey(l.Provider, "sub", l.Subject)
	if l.SID != "" {
		idx = s.providerIndexKey(l.Provider, "sid", l.SID)
	}
	b := s.opts.Client.B()
	upTo := strconv.FormatInt(l.At.Unix(), 10)
	ids, err := s.opts.Client.Do(ctx, b.Zrangebyscore().Key(idx).Min("-inf").Max(upTo).Build()).AsStrSlice()
	if err != nil {
		return unavailable(err)
	}
	cmds := make(rueidis.Commands, 0, len(ids)+1)
	for _, id := range ids {
		if len(id) > 0 && len(id) <= maxHandleID {
			cmds = append(cmds, b.Del().Key(s.recordKey(id)).Build())
		}
	}
	cmds = append(cmds, b.Zremrangebyscore().Key(idx).Min("-inf").Max(upTo).Build())
	for _, res := range s.opts.Client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return unavailable(err)
		}
	}
	for _, id := range ids {
		s.decoded.Remove(id)
	}
	return nil
}

// FirstUse records key in Redis until until (SET NX): the first instance
// to use it anywhere gets true.
func (s *RedisStore) FirstUse(ctx context.Context, key string, until time.Time) (bool, error) {
	ttl := max(until.Sub(s.opts.Now()), time.Second)
	err := s.opts.Client.Do(ctx, s.opts.Client.B().Set().Key(s.indexKey("used", key)).Value("1").Nx().PxMilliseconds(ttl.Milliseconds()).Build()).Error()
	switch {
	case err == nil:
		return true, nil
	case rueidis.IsRedisNil(err):
		return false, nil
	default:
		return false, unavailable(err)
	}
}

// TryLease takes the cluster-wide refresh lease of sess for at most ttl:
// ok is false when another instance holds it. release gives the lease up
// (after a failed refresh); saving the refreshed session ends it too.
func (s *RedisStore) TryLease(ctx context.Context, sess *Session, ttl time.Duration) (release func(), ok bool, err error) {
	key := s.leaseKey(sess.ID)
	token := rand.Text()
	err = s.opts.Client.Do(ctx, s.opts.Client.B().Set().Key(key).Value(token).Nx().PxMilliseconds(max(ttl, time.Millisecond).Milliseconds()).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable(err)
	}
	release = func() {
		_ = releaseLease.Exec(context.WithoutCancel(ctx), s.opts.Client, []string{key}, []string{token}).Error()
	}
	// sess may have been read before another instance refreshed it and
	// ended its lease: then the lease is free again, but sess's refresh
	// token is spent. Look at Redis itself; the waiter's path finds the
	// refreshed session.
	var k [recordKeyLen]byte
	if copy(k[:], sess.storeKey) == recordKeyLen {
		current, err := s.load(ctx, sess.ID, k, false)
		if err == nil && refreshedSince(current, sess) {
			release()
			return nil, false, nil
		}
	}
	return release, true, nil
}

// releaseLease deletes a lease only if it is still the caller's.
var releaseLease = rueidis.NewLuaScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// ErrLeaseLost: the instance refreshing a session gave up (its refresh
// failed) or vanished without saving new tokens.
var ErrLeaseLost = errors.New("session: the refresh on another instance did not complete")

// leasePoll is how often AwaitRefresh looks.
const leasePoll = 25 * time.Millisecond

// AwaitRefresh waits, at most wait, for the instance holding sess's
// refresh lease to save the session with new tokens, and returns it. A
// session deleted meanwhile is ErrNoSession; a lease given up without
// new tokens is ErrLeaseLost.
func (s *RedisStore) AwaitRefresh(ctx context.Context, sess *Session, wait time.Duration) (*Session, error) {
	var key [recordKeyLen]byte
	if copy(key[:], sess.storeKey) != recordKeyLen {
		return nil, errors.New("session: AwaitRefresh needs a session loaded from this store")
	}
	timer := time.NewTimer(leasePoll)
	defer timer.Stop()
	deadline := time.Now().Add(wait)
	for {
		next, err := s.load(ctx, sess.ID, key, true)
		if err != nil {
			return nil, err
		}
		if refreshedSince(next, sess) {
			return next, nil
		}
		held, err := s.opts.Client.Do(ctx, s.opts.Client.B().Exists().Key(s.leaseKey(sess.ID)).Build()).AsInt64()
		if err != nil {
			return nil, unavailable(err)
		}
		if held == 0 || time.Now().After(deadline) {
			// One more look, at Redis itself: the save ended the lease, and
			// the cache may not have heard of the save yet.
			if next, err := s.load(ctx, sess.ID, key, false); err == nil && refreshedSince(next, sess) {
				return next, nil
			}
			return nil, ErrLeaseLost
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			timer.Reset(leasePoll)
		}
	}
}

// refreshedSince reports whether next holds tokens obtained after old's:
// a new refresh token, or a later or other access token (the access token
// itself may not be stored).
func refreshedSince(next, old *Session) bool {
	return next.RefreshToken != old.RefreshToken || next.AccessIssued != old.AccessIssued ||
		next.AccessExpiry != old.AccessExpiry || next.AccessToken != old.AccessToken
}

// seal encrypts plain with key (AES-256-GCM, a random nonce), bound to
// the record's name.
func seal(key, plain []byte, name string) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, []byte(name)), nil
}

// open decrypts a record sealed by seal.
func open(key []byte, record, name string) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(record) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrInvalid
	}
	b := []byte(record)
	return aead.Open(b[aead.NonceSize():aead.NonceSize()], b[:aead.NonceSize()], b[aead.NonceSize():], []byte(name))
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
