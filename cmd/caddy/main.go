// Command caddy is a Caddy binary with gatehouse and its development
// OpenID provider (devidp) built in, for users without xcaddy:
//
//	go run ./cmd/caddy run --config Caddyfile.example
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard Caddy modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// gatehouse and the development OpenID provider.
	_ "github.com/gatehouse-auth/gatehouse"
	_ "github.com/gatehouse-auth/gatehouse/devidp/caddydevidp"
)

func main() {
	caddycmd.Main()
}
