#!/usr/bin/env bash
# Fill in the Homebrew formula template from a release's checksum file.
# Usage: scripts/render-formula.sh VERSION OWNER/REPO SHA256SUMS > geusemaker.rb
# SHA256SUMS lines: "<sha256>  geusemaker-<VERSION>-<platform>.tar.gz".
set -euo pipefail
version="${1:?VERSION}"; repo="${2:?OWNER/REPO}"; sums="${3:?SHA256SUMS}"
template="$(dirname "${BASH_SOURCE[0]}")/../packaging/homebrew/geusemaker.rb"
sum_of() {
  local s
  s="$(awk -v f="geusemaker-$version-$1.tar.gz" '$2 == f { print $1 }' "$sums")"
  [ -n "$s" ] || { echo "render-formula: no checksum for $1 in $sums" >&2; exit 1; }
  echo "$s"
}
# Assignments, so a missing checksum stops the script (set -e).
mac_arm="$(sum_of macos-arm64)"
mac_x86="$(sum_of macos-x86_64)"
linux_arm="$(sum_of linux-aarch64)"
linux_x86="$(sum_of linux-x86_64)"
sed -e "s|@VERSION@|$version|g" \
    -e "s|@REPOSITORY@|$repo|g" \
    -e "s|@SHA256_MACOS_ARM64@|$mac_arm|" \
    -e "s|@SHA256_MACOS_X86_64@|$mac_x86|" \
    -e "s|@SHA256_LINUX_AARCH64@|$linux_arm|" \
    -e "s|@SHA256_LINUX_X86_64@|$linux_x86|" \
    "$template"
