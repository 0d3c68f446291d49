#!/usr/bin/env bash
# Checkpoints end to end: a synthetic transformer-shaped safetensors checkpoint (>= 50M
# parameters) gets alice's mark, is verified blind, and then a folder of uploads (marked,
# doubly marked, unmarked and sharded copies) is scanned against the registry of all owners,
# each file read once for all of them. The verdicts go to $WORK/scan.jsonl (one line per file:
# path, detected DIDs, and per owner did, detected, z, p_value, ...) for the stages after this.
set -euo pipefail
W="$WORK/weights"
U="$W/uploads"
mkdir -p "$U"

# Identities come from 05-identity.sh; make them here when this stage runs alone.
if [ ! -f "$WORK/alice.id.json" ] || [ ! -f "$WORK/registry.jsonl" ]; then
  : > "$WORK/registry.jsonl"
  for name in alice bob carol; do
    [ -f "$WORK/$name.id.json" ] || "$DIDMARK" id new -q -o "$WORK/$name.id.json" --force >/dev/null
    "$DIDMARK" id export-key "$WORK/$name.id.json" >> "$WORK/registry.jsonl"
  done
fi

echo "-- a synthetic checkpoint"
"$DIDMARK" synth checkpoint -o "$W/base.safetensors" --params 50000000 --force

echo "-- alice marks it (per-tensor table, last lines)"
"$DIDMARK" embed "$W/base.safetensors" -o "$W/alice.safetensors" --id "$WORK/alice.id.json" --force | tail -n 7

echo "-- verify with alice's identity, then against the whole registry"
"$DIDMARK" verify "$W/alice.safetensors" --id "$WORK/alice.id.json"
"$DIDMARK" verify "$W/alice.safetensors" --registry "$WORK/registry.jsonl"
if "$DIDMARK" verify "$W/base.safetensors" --id "$WORK/alice.id.json" > /dev/null; then
  echo "unexpected: the unmarked checkpoint verified for alice" >&2
  exit 1
fi

echo "-- a folder of uploads"
rm -rf "$U" && mkdir -p "$U"
# A derivative carrying two marks: bob marked a copy of alice's model.
"$DIDMARK" -q embed "$W/alice.safetensors" -o "$U/1-merged-alice-bob.safetensors" --id "$WORK/bob.id.json" > /dev/null
ln "$W/alice.safetensors" "$U/2-alice.safetensors"
"$DIDMARK" -q embed "$W/base.safetensors" -o "$U/3-bob.safetensors" --id "$WORK/bob.id.json" > /dev/null
ln "$W/base.safetensors" "$U/4-unmarked.safetensors"
# A sharded checkpoint (index + 3 shards, as model hubs publish them) marked by carol.
"$DIDMARK" synth checkpoint -o "$W/sharded" --params 20000000 --shards 3 --dtype bf16 --seed 2 --force > /dev/null
"$DIDMARK" -q embed "$W/sharded" -o "$U/5-carol-sharded" --id "$WORK/carol.id.json" --force > /dev/null
ls -R "$U" | sed 's/^/   /'

echo "-- scan: every file against every registered owner"
status=0
"$DIDMARK" scan "$U" --registry "$WORK/registry.jsonl" --jobs 2 > "$WORK/scan.jsonl" || status=$?
if [ "$status" -ne 0 ]; then
  echo "scan exited $status" >&2
  exit 1
fi
python3 - "$WORK/scan.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    name = r["path"].split("/uploads/")[-1]
    if "error" in r:
        print(f"{name:40s} error: {r['error']['message']}")
        continue
    marks = ", ".join(f"{v['did'][:20]}... z={v['z']:.1f}" for v in r["verdicts"] if v["detected"]) or "no mark"
    print(f"{name:40s} {marks}")
PY
echo "verdicts: $WORK/scan.jsonl"
