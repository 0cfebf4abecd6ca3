# Shortcuts for the commands the README describes.
.PHONY: demo test e2e bench soak ci

demo: ## run the demo: devidp on :9000, a protected app on :8080
	go run ./cmd/caddy run --config Caddyfile.example

test: ## vet and the unit and in-process tests, with the race detector
	go vet -tags e2e ./...
	go test -race ./...

e2e: ## the browser suite (installs Chromium and the npm packages first)
	testdata/e2e/setup.sh
	go test -tags e2e -race ./e2e/

bench: ## the load benchmark against bare Caddy (installs wrk first)
	go run ./bench

soak: ## one million mixed requests against cmd/caddy: no 5xx, flat memory (not in CI; needs redis-server)
	go run ./bench/soak

ci: ## what CI runs on a fresh machine
	.ci/run
