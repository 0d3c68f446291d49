#!/usr/bin/env bash
# Royalties: split a revenue among the owners and contributors the earlier stages found,
# through a cascade (platform fee -> base-model owners by lineage -> data contributors by
# attribution), sign the statement as the platform operator (W3C VC 2.0, eddsa-jcs-2022),
# verify it, and show that a statement with one changed payout is rejected.
# Reads $WORK/lineage.json and $WORK/contributors.json (30-attribution) when they exist;
# otherwise it uses stand-in weights for the identities of 05-identity and says so.
set -euo pipefail
R="$WORK/royalty"
mkdir -p "$R"

# The platform operator signs statements and takes the fee.
"$DIDMARK" id new -q -o "$R/operator.id.json" --force > "$R/operator.did"
OPERATOR=$(cat "$R/operator.did")
echo "operator  $OPERATOR"

# Data contributors: attribution scores when 30-attribution made them.
if [ -f "$WORK/contributors.json" ]; then
  CONTRIB="$WORK/contributors.json"
  echo "data contributors: attribution scores from $CONTRIB"
else
  CONTRIB="$R/contributors.json"
  python3 - "$WORK" "$CONTRIB" <<'PY'
import json, subprocess, sys, os
work, out = sys.argv[1], sys.argv[2]
dids = []
for name in ("alice", "bob", "carol"):
    f = os.path.join(work, f"{name}.id.json")
    if os.path.exists(f):
        dids.append(json.loads(subprocess.run([os.environ["DIDMARK"], "--json", "id", "show", f],
                                              capture_output=True, text=True, check=True).stdout)["did"])
if not dids:
    dids = ["did:web:alice.example", "did:web:bob.example", "did:web:carol.example"]
json.dump(dict(zip(dids, [0.54, 0.27, 0.04])), open(out, "w"), indent=1)
PY
  echo "data contributors: no \$WORK/contributors.json (30-attribution did not run): stand-in scores in $CONTRIB"
fi

# The cascade: 10% platform fee, then 30% of the rest to base-model owners (lineage shares,
# when 30-attribution found marked ancestors), the remainder to data contributors.
python3 - "$R/policy.json" "$OPERATOR" "$WORK/lineage.json" <<'PY'
import json, os, sys
out, operator, lineage = sys.argv[1:4]
levels = [{"name": "platform fee", "keep_bps": 1000, "weights": {operator: 1}}]
if os.path.exists(lineage):
    levels.append({"name": "base-model owners", "keep_bps": 3000, "weights_file": os.path.abspath(lineage)})
levels.append({"name": "data contributors", "weights": "input"})
json.dump({"version": 1, "negative_weights": "clip", "fallback": operator, "levels": levels}, open(out, "w"), indent=1)
PY
if [ -f "$WORK/lineage.json" ]; then
  echo "base-model owners: lineage shares from $WORK/lineage.json"
else
  echo "base-model owners: no \$WORK/lineage.json (10-weights/30-attribution did not run): level left out"
fi

echo
echo "-- split 1,000,000.00 USD (100000000 cents)"
"$DIDMARK" split --revenue 100000000 --unit "USD cents" --weights "$CONTRIB" --policy "$R/policy.json" \
  --sign "$R/operator.id.json" -o "$R/statement.json" --force

echo
echo "-- verify the signed statement"
"$DIDMARK" statement verify "$R/statement.json"

echo
echo "-- one payout changed by one cent"
python3 - "$R/statement.json" "$R/tampered.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
payouts = json.loads(text)["credentialSubject"]["payouts"]
did, amount = next(iter(payouts.items()))
old = json.dumps({did: amount}, separators=(",", ":"))[1:-1]
new = json.dumps({did: str(int(amount) + 1)}, separators=(",", ":"))[1:-1]
open(sys.argv[2], "w").write(text.replace(old, new, 1))
PY
if "$DIDMARK" statement verify "$R/tampered.json"; then
  echo "unexpected: a tampered statement verified" >&2
  exit 1
fi
echo "statement: $R/statement.json"
