"""Pieces of scripts/robustness-report.sh that need Python.

    robustness_report.py embeddings OUT.npy IDS.npy --model DIR [--rows 6000]
        6000 sentence embeddings of real English text (the docstrings of Python's standard
        library, split into sentences: offline, the same on every machine with the same Python)
        computed with the sentence-transformers model in DIR.
    robustness_report.py recall ORIGINAL.npy MARKED.npy
        recall@10 of the marked rows' neighbours against the original's (cosine, 1000 queries).
    robustness_report.py table REPORT.json [REPORT.json ...] --names NAME ...
        a markdown table of the reports side by side (z, detected, relative change).
"""
import argparse
import inspect
import json
import pkgutil
import re
import sys

import numpy as np


def sentences(n):
    import importlib

    seen, out = set(), []
    for m in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
        if m.name.startswith("_") or m.ispkg is None:
            continue
        try:
            mod = importlib.import_module(m.name)
        except Exception:  # noqa: BLE001 (some stdlib modules need a GUI or a platform)
            continue
        if not getattr(mod, "__file__", "") or "site-packages" in (mod.__file__ or ""):
            continue
        objs = [mod] + [v for _, v in inspect.getmembers(mod) if inspect.isfunction(v) or inspect.isclass(v)]
        for o in objs:
            doc = inspect.getdoc(o) or ""
            for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if 30 <= len(s) <= 300 and s not in seen and re.search(r"[a-z]{3}", s):
                    seen.add(s)
                    out.append(s)
                    if len(out) == n:
                        return out
    return out


def cmd_embeddings(a):
    from sentence_transformers import SentenceTransformer

    text = sentences(a.rows)
    if len(text) < a.rows:
        sys.exit(f"only {len(text)} sentences found")
    model = SentenceTransformer(a.model, device="cpu")
    x = model.encode(text, batch_size=64, convert_to_numpy=True, normalize_embeddings=False).astype(np.float32)
    np.save(a.out, x)
    np.save(a.ids, np.arange(5_000_000, 5_000_000 + len(x), dtype=np.int64))
    print(json.dumps({"rows": int(x.shape[0]), "dim": int(x.shape[1]), "first": text[0]}))


def recall_at_10(x0, x1, queries=1000, seed=0):
    def norm(x):
        x = x.astype(np.float64)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    x0, x1 = norm(x0), norm(x1)
    q = np.random.default_rng(seed).choice(len(x0), min(queries, len(x0)), replace=False)
    hits = 0
    for i in q:
        a = np.argsort(-(x0 @ x0[i]))[1:11]
        b = np.argsort(-(x1 @ x1[i]))[1:11]
        hits += len(set(a) & set(b))
    return hits / (10 * len(q))


def cmd_recall(a):
    print(f"{recall_at_10(np.load(a.original), np.load(a.marked)):.4f}")


def fmt_z(c):
    if "error" in c:
        return "n/a"
    z = f"{c['z']:.1f}"
    return f"**{z}**" if c["detected"] else z


def cmd_table(a):
    reps = [json.load(open(p)) for p in a.reports]
    names = a.names or [r["scheme"] for r in reps]
    rows = {}
    for r in reps:
        for c in r["cells"]:
            rows.setdefault(c["label"], []).append(c)
    cols = " | ".join(f"{n} z" for n in names)
    print(f"| attack | {cols} | relative change | realigned |")
    print("|---|" + "---:|" * len(names) + "---:|---|")
    for label, cs in rows.items():
        zs = " | ".join(fmt_z(c) for c in cs)
        ch = next((c["relative_change"] for c in cs if "relative_change" in c), None)
        extra = f" (recall@10 {cs[0]['recall_at_10']:.3f})" if "recall_at_10" in cs[0] else ""
        chs = f"{100 * ch:.3f}%{extra}" if ch is not None else "n/a"
        print(f"| {label} | {zs} | {chs} | (issue 12) |")
    for n, r in zip(names, reps):
        ok = [c for c in r["cells"] if "error" not in c]
        nmax = max(c["null"]["max"] for c in ok)
        fp = sum(c["null"]["empirical_fpr"] * c["null"]["count"] for c in ok)
        tot = sum(c["null"]["count"] for c in ok)
        print(f"\n{n}: {tot} wrong-key tests over {len(ok)} attacked files, largest z {nmax:.2f}, "
              f"{int(fp)} at or above the threshold z {r['z_threshold']:.2f}; {r['seconds']:.0f} s on {r['backend']}.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embeddings")
    e.add_argument("out")
    e.add_argument("ids")
    e.add_argument("--model", required=True)
    e.add_argument("--rows", type=int, default=6000)
    r = sub.add_parser("recall")
    r.add_argument("original")
    r.add_argument("marked")
    t = sub.add_parser("table")
    t.add_argument("reports", nargs="+")
    t.add_argument("--names", nargs="*")
    a = ap.parse_args()
    {"embeddings": cmd_embeddings, "recall": cmd_recall, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
