// Package identity is who a request is, as gatehouse hands it upstream:
// the Identity value and the one Mapper that builds it from a provider's
// claims — an ID token completed by userinfo at login and refresh, or a
// verified bearer token. Headers, placeholders, the allow_* rules and the
// session all read the same value.
//
// A Mapper names the claims that carry the user, the e-mail and the
// groups (a dotted name reaches into nested objects, "realm_access.roles")
// and, through a ClaimSet, the further claims to keep. Values are made
// header-safe as they are read: control characters are dropped, numbers
// and booleans become text, arrays keep their string elements.
//
// The package imports only the standard library, so every library of
// gatehouse and its tests can use it.
package identity
