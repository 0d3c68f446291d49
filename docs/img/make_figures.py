"""The figures of docs/python.md, drawn by didmark.plot from real reports:
`python3 docs/img/make_figures.py docs/img` with the package installed (torch, safetensors,
matplotlib). A robustness report of a synthetic 3.1M-parameter checkpoint (`didmark robustness`
with a grid of noise, pruning, merges, quantizers and casts; 300 wrong keys), and attribution
summaries per contributor: TRAK from a torch model (logistic regression) and kNN-Shapley, on
1000 rows from 5 contributors, one of which has wrong labels."""
import json, os, subprocess, sys, time
import numpy as np

out_dir = sys.argv[1]
work = os.environ.get("DIDMARK_FIGURES_WORK", "/tmp/didmark-figures")
os.makedirs(work, exist_ok=True)
import didmark, didmark.plot
cli = didmark.cli_path() or os.environ["DIDMARK_CLI"]
run = lambda *a: subprocess.run([cli, *map(str, a)], check=True, capture_output=True, text=True)

# --- robustness: a 6-tensor synthetic checkpoint (3.1M parameters) ---
from safetensors.numpy import save_file
rng = np.random.default_rng(7)
orig = {f"layers.{i}.{n}.weight": (rng.standard_normal((512, 1024)) * 0.02).astype(np.float32)
        for i in range(3) for n in ("up", "down")}
save_file(orig, f"{work}/orig.safetensors")
if not os.path.exists(f"{work}/alice.id.json"):
    run("id", "new", "-o", f"{work}/alice.id.json")
run("embed", f"{work}/orig.safetensors", "-o", f"{work}/marked.safetensors", "--id", f"{work}/alice.id.json", "--force")
grid = {"families": [
    {"name": "noise", "template": "noise:{}", "strengths": [0.1, 0.3, 0.6, 1.0, 1.5]},
    {"name": "prune", "template": "prune:{}", "strengths": [0.3, 0.5, 0.7, 0.8, 0.9]},
    {"name": "merge", "template": "merge:{original}:{}", "strengths": [0.25, 0.5, 0.75, 0.9]}],
    "cells": [{"family": "quant", "attacks": ["quant:int8"], "strength": 0},
              {"family": "quant", "attacks": ["quant:int4:g128"], "strength": 0},
              {"family": "cast", "attacks": ["cast:bf16"], "strength": 0},
              {"family": "cast", "attacks": ["cast:fp8-e4m3"], "strength": 0}]}
json.dump(grid, open(f"{work}/grid.json", "w"))
t = time.time()
run("robustness", f"{work}/marked.safetensors", "--id", f"{work}/alice.id.json", "--attacks", f"{work}/grid.json",
    "--original", f"{work}/orig.safetensors", "--null-keys", "300", "--json", "-o", f"{work}/robustness.json")
print(f"robustness: {time.time() - t:.1f} s")
rep = json.load(open(f"{work}/robustness.json"))
didmark.plot.plot(rep, f"{out_dir}/robustness-synthetic.png",
                  title="spread-spectrum on a 3.1M-parameter synthetic checkpoint: z after each attack")

# --- attribution: TRAK from a torch model, 5 contributors, one with flipped labels ---
import torch
torch.manual_seed(0)
n, d, c = 1000, 20, 3
w_true = torch.randn(d, c)
x = torch.randn(n, d)
y = (x @ w_true).argmax(1)
owners = np.repeat(np.array(["did:web:a.example", "did:web:b.example", "did:web:c.example",
                             "did:web:d.example", "did:web:noisy.example"]), [300, 250, 200, 150, 100])
noisy = torch.from_numpy(owners == "did:web:noisy.example")
y[noisy] = (y[noisy] + 1) % c  # wrong labels: this contributor's rows should hurt
xq = torch.randn(300, d)
yq = (xq @ w_true).argmax(1)
net = torch.nn.Linear(d, c)  # multinomial logistic regression
opt = torch.optim.Adam(net.parameters(), 1e-2)
for _ in range(300):
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
t = time.time()
names = sorted(set(owners))
owner_ids = np.array([names.index(o) for o in owners], np.int64)
rep = didmark.trak(net, torch.nn.functional.cross_entropy, (x, y), (xq, yq), proj_dim=256, contributors=owner_ids,
                   scores=f"{work}/trak-scores.npy", overwrite=True)
print(f"trak: {time.time() - t:.1f} s, params {rep['params']}")
rows = {o: int((owners == o).sum()) for o in set(owners)}
summary = {"method": "trak", "contributors": {names[int(k)]: float(v) for k, v in rep["contributors"].items()},
           "contributor_rows": rows}
didmark.plot.attribution(summary, f"{out_dir}/attribution-trak.png", values=rep["values"],
                         title="TRAK (logistic regression, 1000 rows; noisy.example's labels are wrong)")

# --- attribution: kNN-Shapley from the CLI's report ---
xs = x.numpy().astype(np.float32); xqs = xq.numpy().astype(np.float32)
np.save(f"{work}/train.npy", xs); np.save(f"{work}/test.npy", xqs)
vals, per = didmark.knn_shapley(xs, y.numpy().astype(np.int64), xqs, yq.numpy().astype(np.int64), k=5,
                                contributors=owner_ids)
summary = {"method": "knn-shapley", "contributors": {names[int(k)]: float(v) for k, v in per.items()},
           "contributor_rows": rows}
json.dump(summary, open(f"{work}/knn-summary.json", "w"))
didmark.plot.attribution(summary, f"{out_dir}/attribution-knn-shapley.png", values=vals,
                         title="kNN-Shapley (k = 5, same data)")
print("done")
