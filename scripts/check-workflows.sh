#!/usr/bin/env bash
# Checks GitHub workflow files against the workflow schema with action-validator
# (a devDependency: Rust compiled to wasm, run by node), so a broken workflow
# fails CI here and not on the first tag.
#   scripts/check-workflows.sh [FILE...]      default: .github/workflows/*.yml
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
validator="$root/node_modules/.bin/action-validator"
[ -x "$validator" ] || { echo "check-workflows: $validator is missing (npm install)"; exit 2; }
if [ $# -eq 0 ]; then set -- "$root"/.github/workflows/*.yml; fi
status=0
for f in "$@"; do
  # Relative paths in a workflow (hashFiles globs) are checked against the repository.
  if (cd "$root" && "$validator" "$f"); then echo "valid: $f"; else echo "INVALID: $f"; status=1; fi
done
exit $status
