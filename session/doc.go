// Package session keeps gatehouse's sessions and the logins in progress,
// carried by sealed cookies.
//
// A Manager (New) is what callers use. Load returns the session a request
// carries, Save writes a session's cookie, and Revoke signs a session out.
// Anything wrong with the cookies — missing, tampered, truncated,
// reordered, expired, sealed with a removed secret, revoked — is
// ErrNoSession (or wraps it; ErrExpired, ErrRevoked), so the caller treats
// it as "not signed in" and never as a server error. A cookie decoded once
// is answered from a small cache until the session's lifetime ends, but
// revocation is asked on every Load.
//
// A Session holds who the user is, the name of the provider they signed
// in with ("" for a gateway with one provider written flat), and that
// provider's session id and tokens. A back-channel logout
// (EndProviderSession) names a provider too: it ends that provider's
// sessions only, since two providers may know the same subject or sid.
//
// A Store keeps sessions behind the cookie: Save gives the value the
// cookie carries, Load turns that value back into a Session, and
// Revoke/Revoked keep track of signed-out sessions. The default,
// CookieStore (NewCookieStore), keeps the whole session in the cookie as
// compact JSON, so no per-user state lives on the server. Its revocation
// is an in-memory denylist: it holds in this process, for every Manager
// sharing the CookieStore (Options.Store), not on other instances or after
// a restart. A shared store would make it cluster-wide.
//
// Cookies, embedded in the Manager, is the transport. It seals the
// Store's value and, when the result does not fit one cookie, splits it
// into numbered chunks (_gatehouse, _gatehouse_1, …; the first says how
// many), expiring stale higher chunks; on Load it reassembles them and
// ignores stray ones. Load checks the absolute lifetime against the login
// time recorded inside the session. ClearSession and ClearAll expire the
// cookies, HasSession tells whether a request carries a session cookie at
// all, and StripCookies removes our cookies from a request before it is
// passed upstream. CheckCookieName and CheckCookieDomain validate the
// configuration.
//
// SaveLogin and TakeLogin keep one Login (provider, state, nonce, PKCE
// verifier, return-to) per login in progress, in a short-lived cookie named after a
// hash of its state, so parallel logins in several tabs all finish.
// TakeLogin expires the cookie as it reads it: a callback works once.
//
// A Codec seals bytes with gorilla/securecookie (AES-256-CTR, then
// HMAC-SHA256 over the cookie name, a timestamp and the ciphertext). Its
// keys are derived with HKDF-SHA256 from each configured secret and a
// purpose ("session", "login", with Options.Binding), so a login cookie
// never unseals as a session. The first secret seals and every secret
// unseals, which lets operators rotate secrets without logging users out;
// Load reports a session sealed with an older secret so it is saved again.
package session
