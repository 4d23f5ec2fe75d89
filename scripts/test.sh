#!/usr/bin/env bash
# Install what the tests need — a pinned moto server (a real AWS-compatible HTTP server),
# the shellcheck linter and tmux — then run the whole suite. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MOTO_VERSION=5.2.1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/geusemaker-target}"

have_moto() {
  python3 - "$MOTO_VERSION" <<'PY' 2>/dev/null
import sys, importlib.metadata as m
sys.exit(0 if m.version("moto") == sys.argv[1] else 1)
PY
}

if ! have_moto; then
  echo "test.sh: installing moto[server]==$MOTO_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "moto[server]==$MOTO_VERSION"
fi
# The compose files the recipes generate are validated against the Compose Specification's
# JSON schema (tests/validate_compose.py): PyYAML and jsonschema (moto[server] brings both).
if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
  echo "test.sh: installing jsonschema and PyYAML"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "jsonschema==4.26.0" "PyYAML==6.0.3"
fi
if ! command -v moto_server >/dev/null 2>&1; then
  # e.g. a pyenv shim not yet rehashed: run the server module directly.
  export MOTO_SERVER="python3 -m moto.server"
fi

# The linter checks the generated user data; tmux drives the REPL in a terminal; git serves
# shared recipe sources (local bare repositories); node runs generated CloudFront Functions.
missing=""
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
command -v git >/dev/null 2>&1 || missing="$missing git"
# Node.js runs the generated CloudFront Function (the gpu tier's viewer filter).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
if [ -n "$missing" ]; then
  echo "test.sh: installing$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Every crate of the lock, for every platform: tests/distribution/packages.rs reads the whole tree's
# licenses with `cargo metadata --offline` (a build fetches only this platform's crates).
cargo fetch --locked --quiet
cargo test --locked "$@"
