// Package assertion signs the identity assertion gatehouse hands upstream
// with every authenticated request: a short-lived JWT that proves who the
// user is (like Pomerium's X-Pomerium-Jwt-Assertion), and publishes the
// JWKS an upstream verifies it with, using any stock JWT library.
//
// A Signer (New) holds the site's issuer URL, the assertion lifetime
// (default one minute) and the signing keys. Token(cacheKey, Claims)
// returns a compact JWS: the header carries alg, kid and typ "JWT"; the
// claims are iss (the issuer, or the Claims' own), aud, sub, email and groups (left out when
// empty), the chosen Extra claims — which can never replace the registered
// ones (Reserved) — iat, and exp = min(iat + lifetime, Claims.NotAfter),
// so an assertion never outlives the session or bearer token behind it;
// when that leaves less than a second, Token fails with ErrSessionEnded.
// There is no nbf: it would equal iat, and a second time check only adds a
// way for a fast gateway clock to break verification. There is no jti: an
// assertion is deliberately reused for many requests, so a jti would not
// identify a request and would invite replay checks that cannot work.
//
// Signing happens once per session per half lifetime, not per request:
// the Signer keeps assertions in a bounded LRU (hashicorp/golang-lru) under
// the caller's cache key (a session ID and version, a bearer token's
// hash) and returns the cached one while it has at least half its
// lifetime left, so the upstream always gets at least half of it. An entry
// keeps a copy of its claims and is used only for a request whose claims
// are the same and whose NotAfter is not before its exp, and only while
// the key that signed it is still the signing key. A cache hit does no
// signing and allocates nothing; a miss signs (ES256: tens of
// microseconds).
//
// Keys come from one of two places. Options.PrivateKeyPEM is a static key
// (EC P-256 → ES256, RSA of at least 2048 bits → RS256 or PS256, Ed25519 →
// EdDSA) that never rotates. Options.Storage (Caddy's storage: any
// certmagic.Storage is a Storage; MemoryStorage for tests) holds a key
// ring, a JSON document (Options.StorageKey) of PKCS#8 private keys with
// their creation and activation times, shared by every instance behind a
// load balancer. Every kid is the key's RFC 7638 thumbprint.
//
// A key of the ring goes through these stages, with no moment at which a
// verifier could meet an unknown kid:
//
//   - Published ahead. When the newest key has signed for RotationPeriod
//     (default 24h) less PublishAhead (default 1h), the instance that
//     notices takes the storage lock, reloads the ring, checks again and
//     writes it back with a new key that activates PublishAhead later.
//     Every instance publishes every key that has not expired, so within
//     RefreshInterval (default 5m) all of them publish the new key, and
//     within JWKSMaxAge (5m) more every verifier's cached JWKS has it:
//     PublishAhead must exceed the two.
//   - Signing. Each instance signs with the newest key whose activation
//     time has passed, decided on the request path from the keys in memory
//     — the switch happens at the activation time, not at a refresh.
//   - Retired. A key stops signing when its successor activates, and stays
//     published until every assertion it signed has expired: the lifetime,
//     plus PublishAhead as a margin for an instance that switched late (a
//     clock behind, refreshes failing).
//   - Dropped from the JWKS and, at the next refresh, from the document.
//
// The 24-hour rotation bounds what a leaked key is good for to about a day,
// for one storage write a day for the whole cluster (and one more that
// drops the retired key); the JWKS holds one or two keys. A ring is
// created, under the lock, by the first instance that finds none; its
// first key signs at once (no verifier can know an older one).
//
// The request path never touches storage. New loads the ring (creating it
// if need be) and starts a goroutine that calls Refresh every
// RefreshInterval; Refresh reloads the document, installs its keys, and
// rotates or prunes under the lock when due. Close (or the end of New's
// context) stops the goroutine and waits for it; the Signer keeps signing
// with the keys it has. A refresh that fails leaves the keys in memory in
// use and is logged. A document that cannot be read is ErrCorruptRing
// (New fails; a running Signer keeps its keys) and is never overwritten,
// as it may come from a newer gatehouse. A document that disappears is
// written back from memory by the next refresh. To discard the keys (a
// leak), stop every instance, delete the document and start them again. An
// instance cut off from storage for longer than PublishAhead around a
// rotation may keep signing with a key the others have retired; its own
// JWKS still has it, the others' drop it after the margin.
//
// Published returns the JWKS ({"keys":[...]}, each key with kid, alg and
// use "sig"), a strong ETag and a Cache-Control value (public,
// max-age=JWKSMaxAge), computed whenever the keys change; instances with
// the same ring publish the same bytes. ServeJWKS answers GET and HEAD for
// it, with 304 for a matching If-None-Match.
//
// An upstream verifying an assertion fetches the JWKS (honouring its
// max-age, and ideally refetching once for an unknown kid), picks the key
// by the header's kid, uses the key's alg (never "none" or HMAC), checks
// the signature, then that iss is the site's URL, that aud is its own
// name, and that exp (and, if it likes, iat) holds with a small clock
// skew. sub is the user; email and groups are as the gateway saw them.
package assertion
