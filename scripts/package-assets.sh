#!/usr/bin/env bash
# The generated files the Linux packages install beside the binary: completions for bash, zsh
# and fish and the man page (gzipped, as Debian and Fedora keep them), made by the binary
# itself from its command definitions. Written next to the binary, in <release dir>/package/,
# where Cargo.toml's [package.metadata.deb] and [package.metadata.generate-rpm] find them
# (both tools map `target/release/` to the directory of the target they package).
#
#   scripts/package-assets.sh target/x86_64-unknown-linux-musl/release
set -euo pipefail

release="${1:?usage: scripts/package-assets.sh <release directory holding the geusemaker binary>}"
bin="$release/geusemaker"
[ -x "$bin" ] || { echo "package-assets: no binary at $bin" >&2; exit 1; }
out="$release/package"
rm -rf "$out"
mkdir -p "$out"
"$bin" completions bash > "$out/geusemaker.bash"
"$bin" completions zsh > "$out/_geusemaker"
"$bin" completions fish > "$out/geusemaker.fish"
# -n: no name or time stamp in the header, so the same page gives the same bytes.
"$bin" man | gzip -9n > "$out/geusemaker.1.gz"
echo "package-assets: completions and the man page in $out"
