#!/usr/bin/env bash
# In-memory synthetic checkpoint: embed a mark, verify it blind, compare with the original
# and a wrong key.
set -euo pipefail
"$DIDMARK" demo --params 16000000
