#!/usr/bin/env bash
# Build the release binary as the release workflow does and print its size and start-up time
# (figures, not a test). Targets (issue 10): stripped binary < 40 MB, `--version` < 10 ms.
# The figures go into docs/performance.md. Usage: scripts/release-check.sh [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/geusemaker-target}"
runs="${1:-50}"

cargo build --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/geusemaker"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT

# Median wall time (ms) of a command over $runs runs (after a warm-up run).
median_ms() { GEUSEMAKER_HOME="$home" python3 scripts/median-ms.py "$runs" "$@"; }

bytes="$(wc -c < "$bin")"
mb="$(python3 -c "print(f'{$bytes / 1e6:.1f}')")"
stripped="yes"
if command -v file >/dev/null 2>&1 && file "$bin" | grep -q "not stripped"; then stripped="no"; fi
version_ms="$(median_ms "$bin" --version)"
list_ms="$(median_ms "$bin" recipes list)"
verdict() { python3 -c "print('met' if $1 < $2 else 'NOT met')"; }

echo "release check: $("$bin" --version)"
echo "  binary                 $mb MB ($bytes bytes, stripped: $stripped)   target < 40 MB: $(verdict "$bytes" 40000000)"
echo "  geusemaker --version   median $version_ms ms over $runs runs   target < 10 ms: $(verdict "$version_ms" 10)"
echo "  geusemaker recipes list  median $list_ms ms over $runs runs"
