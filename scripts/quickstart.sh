#!/usr/bin/env bash
# The main job on built-in defaults: install what is missing, build, then run every stage
# in scripts/quickstart.d/ in order (identities and a marked checkpoint, dataset marks,
# attribution, royalty split). Outputs land in out/quickstart/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
export DIDMARK="$ROOT/build/bin/didmark"
export WORK=${WORK:-$ROOT/out/quickstart}
rm -rf "$WORK"
mkdir -p "$WORK"
for stage in "$ROOT"/scripts/quickstart.d/*.sh; do
  echo
  echo "=== $(basename "$stage" .sh) ==="
  bash "$stage"
done
echo
echo "quickstart: all stages done; outputs in $WORK"
