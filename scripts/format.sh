#!/usr/bin/env bash
# clang-format over the project's own C++ (.clang-format: Google style, 120 columns).
#   scripts/format.sh                 reformat in place
#   scripts/format.sh --check         list the files that differ from their formatted form; exit 1 if any
#   scripts/format.sh [--check] FILE...   only these files
# CTest runs the check as format.check (so CI does). clang-format comes from Debian (scripts/setup.sh);
# another major version than 14 formats some constructs differently, so the check names the version.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check=0
if [[ "${1:-}" == --check ]]; then check=1; shift; fi
CLANG_FORMAT="${CLANG_FORMAT:-clang-format}"
command -v "$CLANG_FORMAT" >/dev/null || { echo "format.sh: $CLANG_FORMAT not found (scripts/setup.sh installs clang-format)" >&2; exit 2; }
version=$("$CLANG_FORMAT" --version)
cd "$ROOT"
if [[ $# -gt 0 ]]; then
  files=("$@")
else
  # Tracked and new (not ignored) sources; fuzz corpora are data.
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.cpp' '*.h' '*.h.in' | grep -v '^fuzz/corpus/\|^fuzz/regressions/' | while read -r f; do [[ -f $f ]] && echo "$f"; done)
fi
if [[ $check == 0 ]]; then
  "$CLANG_FORMAT" -i --style=file "${files[@]}"
  echo "format.sh: formatted ${#files[@]} files"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  if ! "$CLANG_FORMAT" --style=file --assume-filename="${f%.in}" "$f" | cmp -s - "$f"; then bad+=("$f"); fi
done
if [[ ${#bad[@]} -gt 0 ]]; then
  printf 'not formatted: %s\n' "${bad[@]}"
  echo "format.sh: ${#bad[@]} of ${#files[@]} files differ from $version; run scripts/format.sh to fix them" >&2
  exit 1
fi
echo "format.sh: ${#files[@]} files formatted as $version"
