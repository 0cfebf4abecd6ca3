#!/usr/bin/env bash
# Installs what the browser suite (package e2e) needs on a fresh machine:
# Debian's chromium, and the test provider's npm packages, pinned by
# package-lock.json. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
chromium --version

if ! command -v node >/dev/null 2>&1; then
	echo "setup.sh: Node.js (node, npm) is required for the test provider" >&2
	exit 1
fi
node --version
npm ci --no-audit --no-fund --loglevel=error
