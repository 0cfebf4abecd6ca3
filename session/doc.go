// Package session keeps gatehouse's state in the browser: the signed-in
// user's session and the logins in progress, each sealed into cookies.
//
// A Codec seals bytes with gorilla/securecookie (AES-256-CTR, then
// HMAC-SHA256 over the cookie name, a timestamp and the ciphertext). Its keys
// are derived with HKDF-SHA256 from each configured secret and a purpose
// ("session", "login"), so a login cookie never unseals as a session. The
// first secret seals and every secret unseals, which lets operators rotate
// secrets without logging users out.
//
// A CookieStore (NewCookieStore) is the default store. Save marshals a
// Session compactly, seals it and, when the result does not fit one cookie,
// splits it into numbered chunks (_gatehouse, _gatehouse_1, …) and expires
// stale higher chunks. Load reassembles the chunks, unseals them and checks
// the absolute lifetime against the login time recorded inside the sealed
// value. Anything wrong with the cookies — missing, tampered, truncated,
// reordered, expired, sealed with a removed secret — is ErrNoSession, so the
// caller treats it as "not signed in" and never as a server error.
//
// SaveLogin and TakeLogin keep one Login (state, nonce, PKCE verifier,
// return-to) per login in progress, in a short-lived cookie named after a
// hash of its state, so parallel logins in several tabs all finish.
// TakeLogin expires the cookie as it reads it: a callback works once.
//
// StripCookies removes the store's cookies from a request before it is
// passed upstream.
package session
