// Package verify checks JSON Web Tokens signed by an OpenID provider: ID
// tokens during a login and, later, bearer access tokens on API requests.
//
// A Verifier (New) holds what a token must satisfy: the exact issuer, the
// accepted audiences, an allow-list of asymmetric JWS algorithms (HMAC and
// "none" are never accepted, so a public key can never be used as an HMAC
// secret), a clock skew and a size cap. Verify takes a compact JWS and, in
// this order: caps its size; splits and strictly decodes it; checks the
// header's alg against the allow-list before any key is consulted; refuses
// critical header extensions; finds the keys that fit the header's kid and
// alg in the KeySet (refreshing the set once, rate-limited, when none fits);
// checks the signature with jwx; and only then parses the claims and checks
// iss, aud, exp (required), nbf and iat. Failures wrap ErrInvalidToken;
// ErrKeysUnavailable means no keys could be obtained at all.
//
// A KeySet is either a StaticKeySet (NewStaticKeySet, from a JWKS document)
// or a RemoteKeySet (NewRemoteKeySet): the provider's jwks_uri, fetched
// lazily by jwx's jwk.Cache and refreshed in the background at a fixed
// interval (a provider's long max-age is not honoured, so a withdrawn key
// goes). Verification reads an atomic snapshot of the last good key set, so
// it never waits on the network once keys are known, and a provider outage
// keeps the old keys working. On-demand fetches are shared by concurrent
// callers; the first one for an unknown kid after a fetch that succeeded on
// its own runs at once, repeated ones are rate-limited, so a flood of
// tokens with random kids cannot hammer the provider. Keys jwx cannot parse
// (an unknown kty) are left out of the document and logged once (RFC 7517
// §5). Keys without an alg are usable, but only for algorithms that fit
// their key type and curve; RSA keys shorter than 2048 bits, symmetric keys
// and encryption keys are ignored, and a token without kid needs exactly
// one fitting key. Err and Probe tell whether the provider can be reached
// now. RemoteKeySets hands out one RemoteKeySet per URL to share.
//
// With Config.CacheSize, a Verifier remembers verified tokens in a bounded
// LRU (hashicorp/golang-lru, no background goroutine) keyed by the token's
// SHA-256; an entry is never served at or after the token's exp, nor after
// the key set changed, and only valid tokens are cached. Stats counts verifications by outcome and cache
// use.
//
// BearerToken reads a token from an `Authorization: Bearer` header only
// (RFC 6750 §2.1), refusing malformed headers — any form but the canonical
// one that names Bearer (ErrMalformedAuthorization) — and oversized ones
// before any parsing.
//
// Claims exposes the registered and OpenID Connect claims and the scopes of
// access tokens (`scope` or `scp`), decoded from the payload one by one;
// Claim decodes one more, Map all of them (once, then kept). Derived keeps
// what a caller makes of a token's claims (its identity) with them, so a
// token from the cache is not mapped again. ClaimsOfVerified decodes a
// token verified before and kept sealed since (a session's ID token),
// without checking it again.
//
// A DPoPVerifier (NewDPoPVerifier) checks the DPoP proofs (RFC 9449) that
// accompany DPoP-bound access tokens. Verify takes the request's DPoP
// header values, method, absolute URL and access token and, in order:
// requires exactly one proof; caps its size; splits it; checks the
// header's typ (dpop+jwt), refuses crit, checks alg against an asymmetric
// allow-list, and checks that jwk is a public EC, RSA (2048–8192 bits) or
// Ed25519 key fitting alg, with no private or symmetric members; checks
// the signature with that key; then jti, htm, htu (compared after RFC 3986
// normalization, without query and fragment), iat (at most MaxAge old,
// ClockSkew ahead) and ath. A jti seen with the same key while its proof
// is still acceptable is ErrDPoPReplay; seen jtis are kept in a bounded
// LRU keyed by a hash, and LiveEvictions counts entries dropped early.
// Checked headers are remembered, so a client's later proofs cost a
// signature check and the claims. Server nonces are not supported. Verify
// returns the key's RFC 7638 thumbprint; CheckDPoPBinding compares it with
// a token's cnf.jkt (ConfirmationThumbprint), for JWT claims and
// introspection answers alike. Proof refusals wrap ErrInvalidDPoPProof,
// binding refusals ErrInvalidToken.
package verify
