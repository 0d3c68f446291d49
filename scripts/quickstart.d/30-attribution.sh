#!/usr/bin/env bash
# Attribution on built-in data: exact KNN-Shapley values of a synthetic labelled dataset
# whose contributors (the DIDs of $WORK/registry.jsonl when 05-identity made it) differ in
# label quality, summed per contributor into $WORK/contributors.json; then, when 10-weights
# left its scan verdicts, the lineage shares of the scanned checkpoint's owners into
# $WORK/lineage.json. Both files are weights for `didmark split --weights`.
set -euo pipefail
D="$WORK/attribution"
REG=()
if [ -f "$WORK/registry.jsonl" ]; then REG=(--registry "$WORK/registry.jsonl"); fi
"$DIDMARK" synth knn-dataset -o "$D" ${REG[@]+"${REG[@]}"} --train 4000 --test 400 --force
echo
"$DIDMARK" attribute knn-shapley -k 5 \
  --train "$D/train.npy" --train-labels "$D/train_labels.npy" \
  --test "$D/test.npy" --test-labels "$D/test_labels.npy" \
  --contributors "$D/contributors.npy" --contributor-names "$D/contributors.txt" \
  -o "$D/values.npy" --totals-out "$WORK/contributors.json" --force
if [ -f "$WORK/scan.jsonl" ]; then
  echo
  "$DIDMARK" attribute lineage --verdicts "$WORK/scan.jsonl" -o "$WORK/lineage.json" --force
fi
