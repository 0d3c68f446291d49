#!/usr/bin/env bash
# Dataset marks on built-in defaults: a 100,000-row CSV table and a 10,000 x 128 embedding
# array are marked for alice, verified blind against the registry, and verified again after
# the subset + shuffle attack (a random 10% of the rows, in random order).
set -euo pipefail
D="$WORK/datasets"
mkdir -p "$D"

"$DIDMARK" synth table -o "$D/people.csv" --rows 100000 --force
"$DIDMARK" synth array -o "$D/emb.npy" --rows 10000 --dim 128 --ids-out "$D/emb.ids.npy" --force

if ! "$DIDMARK" --help | sed -n '/Subcommands:/,$p' | grep -q '^  embed '; then
  echo "datasets: 'didmark embed' is not in this build; generated data only"
  exit 0
fi

# Identities come from 05-identity.sh; make them here when this stage runs alone.
if [ ! -f "$WORK/alice.id.json" ] || [ ! -f "$WORK/registry.jsonl" ]; then
  : > "$WORK/registry.jsonl"
  for name in alice bob carol; do
    [ -f "$WORK/$name.id.json" ] || "$DIDMARK" id new -q -o "$WORK/$name.id.json" --force >/dev/null
    "$DIDMARK" id export-key "$WORK/$name.id.json" >> "$WORK/registry.jsonl"
  done
fi

# verdicts EXPECT FILE [args]: verify FILE against the registry, one line per owner; fail
# unless alice (the registry's first owner) is detected exactly when EXPECT is "alice".
verdicts() {
  local expect=$1 f=$2
  shift 2
  DIDMARK_JSON_COMPACT=1 "$DIDMARK" --json verify "$f" --registry "$WORK/registry.jsonl" "$@" >"$D/verdict.json" || true
  python3 - "$D/verdict.json" "$f" "$WORK/registry.jsonl" "$expect" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
vs = j.get("verdicts", j.get("owners", [j])) if isinstance(j, dict) else j
alice = json.loads(open(sys.argv[3]).readline())["did"]
name = sys.argv[2].split("/")[-1]
ok = True
for v in vs:
    print(f"  {name:<22} {v['did'][:32]}...  {'DETECTED' if v['detected'] else 'not detected':<12} "
          f"p={v['p_value']:.3g}  z={v['z']:.1f}  bit errors {v['bit_errors']}/{v['bits']}")
    ok &= v["detected"] == (v["did"] == alice and sys.argv[4] == "alice")
sys.exit(0 if ok and vs else 1)
PY
}

echo "--- table: mark for alice"
"$DIDMARK" embed "$D/people.csv" -o "$D/people.marked.csv" --id "$WORK/alice.id.json" --force
cmp -s "$D/people.csv" "$D/people.marked.csv" && { echo "marked table equals the original"; exit 1; }
echo "--- table: verify (marked copy, then the original)"
verdicts alice "$D/people.marked.csv"
verdicts nobody "$D/people.csv"
echo "--- table: 10% of the rows, shuffled"
"$DIDMARK" synth subset -i "$D/people.marked.csv" -o "$D/people.attacked.csv" --fraction 0.1 --seed 7 --force
verdicts alice "$D/people.attacked.csv"

echo "--- array: mark for alice"
"$DIDMARK" embed "$D/emb.npy" -o "$D/emb.marked.npy" --id "$WORK/alice.id.json" --ids "$D/emb.ids.npy" --force
echo "--- array: verify"
verdicts alice "$D/emb.marked.npy" --ids "$D/emb.ids.npy"
echo "--- array: 10% of the rows, shuffled (ids carried along)"
"$DIDMARK" synth subset -i "$D/emb.marked.npy" --ids "$D/emb.ids.npy" -o "$D/emb.attacked.npy" \
  --ids-out "$D/emb.attacked.ids.npy" --fraction 0.1 --seed 7 --force
verdicts alice "$D/emb.attacked.npy" --ids "$D/emb.attacked.ids.npy"
