#!/usr/bin/env bash
# The release notes of one version: its section of CHANGELOG.md (keep-a-changelog), without
# the heading. Usage: scripts/changelog-notes.sh 0.2.0 [CHANGELOG.md]. Exit 1 when the
# changelog has no section for that version.
set -euo pipefail
version="${1:?usage: scripts/changelog-notes.sh VERSION [CHANGELOG.md]}"
file="${2:-$(dirname "${BASH_SOURCE[0]}")/../CHANGELOG.md}"
awk -v v="$version" '
  /^## \[/ { if (found) exit; if (index($0, "## [" v "]") == 1) { found = 1; next } }
  found { print }
  END { if (!found) exit 1 }
' "$file" | sed -e '/./,$!d' || { echo "no section for $version in $file" >&2; exit 1; }
