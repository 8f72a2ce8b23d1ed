#!/usr/bin/env bash
# The README's test command: every test of the workspace, against real TLS, real Lua, real sockets.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
