#!/usr/bin/env bash
# Three owner identities (did:key, Ed25519) and a registry of their watermark keys. Later
# stages use $WORK/{alice,bob,carol}.id.json and $WORK/registry.jsonl.
set -euo pipefail
: > "$WORK/registry.jsonl"
for name in alice bob carol; do
  did=$("$DIDMARK" id new -q -o "$WORK/$name.id.json" --force)
  "$DIDMARK" id export-key "$WORK/$name.id.json" >> "$WORK/registry.jsonl"
  printf '%-6s %s\n' "$name" "$did"
done
"$DIDMARK" id check-registry "$WORK/registry.jsonl"
