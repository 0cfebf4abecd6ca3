package caddymodule

import (
	"slices"
	"sort"
	"strings"

	"github.com/gatehouse-auth/gatehouse/identity"
)

// rules are the allow_* authorization rules. With none configured, every
// authenticated user passes. Otherwise a user passes when at least one rule
// matches:
//
//   - allow_emails: the e-mail equals one of them, ignoring case;
//   - allow_domains: the e-mail's domain (after its single "@") equals one
//     of them, ignoring case;
//   - allow_groups: one of the user's groups equals one of them exactly;
//   - allow_claim NAME VALUE...: the claim (a string, or an array of
//     strings) equals, or contains, one of the values exactly.
//
// E-mail rules never match an address the provider marked unverified
// (email_verified: false) or one that is not a plain local@domain.
type rules struct {
	emails  map[string]bool
	domains map[string]bool
	groups  map[string]bool
	claims  []claimRule
}

type claimRule struct {
	name   string
	values map[string]bool
}

func newRules(emails, domains, groups []string, claims map[string][]string) rules {
	set := func(vs []string, fold bool) map[string]bool {
		if len(vs) == 0 {
			return nil
		}
		m := make(map[string]bool, len(vs))
		for _, v := range vs {
			if fold {
				v = strings.ToLower(v)
			}
			m[v] = true
		}
		return m
	}
	r := rules{emails: set(emails, true), domains: set(domains, true), groups: set(groups, false)}
	names := make([]string, 0, len(claims))
	for name := range claims {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r.claims = append(r.claims, claimRule{name: name, values: set(claims[name], false)})
	}
	return r
}

func (r rules) configured() bool {
	return r.emails != nil || r.domains != nil || r.groups != nil || len(r.claims) > 0
}

// allows applies the rules to an identity.
func (r rules) allows(id *identity.Identity) bool {
	if !r.configured() {
		return true
	}
	if r.emails != nil || r.domains != nil {
		if local, domain, ok := splitEmail(id.Email); ok && !id.EmailUnverified {
			if r.emails[strings.ToLower(local+"@"+domain)] || r.domains[strings.ToLower(domain)] {
				return true
			}
		}
	}
	for _, g := range id.Groups {
		if r.groups[g] {
			return true
		}
	}
	for _, c := range r.claims {
		for _, v := range id.Claims[c.name] {
			if c.values[v] {
				return true
			}
		}
	}
	return false
}

// splitEmail accepts exactly one "@" with a non-empty local part and a
// domain of DNS characters (oauth2-proxy CVE-2026-40574: a check on the
// last "@" let attacker@evil.com@company.com through).
func splitEmail(email string) (local, domain string, ok bool) {
	local, domain, found := strings.Cut(email, "@")
	if !found || local == "" || domain == "" || strings.Contains(domain, "@") {
		return "", "", false
	}
	for i := 0; i < len(email); i++ {
		if c := email[i]; c <= ' ' || c >= 0x7f {
			return "", "", false
		}
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" {
			return "", "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i] | 0x20
			if !(c >= 'a' && c <= 'z' || label[i] >= '0' && label[i] <= '9' || label[i] == '-') {
				return "", "", false
			}
		}
	}
	return local, domain, true
}

// validateRules checks the allow_* values.
func validateRules(bad badFunc, emails, domains []string, claims map[string][]string) {
	for _, e := range emails {
		if _, _, ok := splitEmail(e); !ok {
			bad("allow_emails", "%q is not an e-mail address", e)
		}
	}
	for _, d := range domains {
		if _, _, ok := splitEmail("x@" + d); !ok {
			bad("allow_domains", "%q is not a domain (write example.com, not @example.com)", d)
		}
	}
	for name, values := range claims {
		if name == "" || strings.ContainsAny(name, " \t") || len(values) == 0 || slices.Contains(values, "") {
			bad("allow_claim", "%q needs a claim name and at least one non-empty value", name)
		}
	}
}
