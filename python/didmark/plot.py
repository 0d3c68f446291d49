"""Figures from didmark's JSON reports: ``python3 -m didmark.plot REPORT.json -o REPORT.png``.

The kind of report is recognised from its fields:

* a ``didmark robustness`` report (``cells``): robustness curves and ROC (:func:`plot`);
* an attribution report (``didmark attribute ... --json``, :func:`didmark.trak`, or a
  ``--totals-out`` file of ``{contributor: total}``): a summary per contributor
  (:func:`attribution`).

For a robustness report, three panels, drawn from the JSON alone (numpy and matplotlib,
nothing else):

* every attack's z-score as a bar, against the detection threshold (p <= 1e-9 by default, the
  report's ``z_threshold``) and the largest wrong-key z;
* z against attack strength for each family measured at several strengths (noise, pruning,
  merges, subsets, ...), with the same threshold line;
* ROC on a log false-positive axis: for each family, the share of its attacked files (all
  strengths and trials) detected at the threshold that gives each false-positive rate, from
  the Hoeffding bound (solid) and from the wrong keys actually tested (dashed, down to 1/N).

The file runs as a script too (``python3 python/didmark/plot.py REPORT.json -o REPORT.png``),
so it does not import the rest of the package.
"""
import argparse
import json
import math
import sys

import numpy as np


def _cells(report):
    return [c for c in report["cells"] if "error" not in c]


def _families(cells):
    fams = {}
    for c in cells:
        fams.setdefault(c["family"], []).append(c)
    return fams


def roc_points(report, family_cells):
    """(fpr_bound, tpr_bound, fpr_emp, tpr_emp) over a grid of thresholds for one family."""
    pos = np.array([t["z"] for c in family_cells for t in c["trials"]])
    null = np.concatenate([np.asarray(c["null"]["z"], float) for c in family_cells]) if family_cells else np.zeros(0)
    ts = np.linspace(0, max(40.0, pos.max() + 1 if len(pos) else 0), 800)
    fpr_b = np.exp(-ts ** 2 / 2)
    tpr = np.array([(pos >= t).mean() if len(pos) else 0 for t in ts])
    if len(null):
        null = np.sort(null)
        fpr_e = 1 - np.searchsorted(null, ts, side="left") / len(null)
        keep = fpr_e > 0
        return fpr_b, tpr, fpr_e[keep], tpr[keep]
    return fpr_b, tpr, np.zeros(0), np.zeros(0)


def plot(report, out, title=None):
    """Robustness curves and ROC of a ``didmark robustness`` report (see the module docs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = _cells(report)
    zt = report.get("z_threshold", 6.44)
    pt = report.get("p_threshold", 1e-9)
    fams = _families(cells)
    # Families measured at several distinct strengths (casts and quantizers share theirs: bars only).
    numeric = {f: cs for f, cs in fams.items() if len(cs) >= 2 and len({c["strength"] for c in cs}) == len(cs)}

    ncols = 3
    nsmall = len(numeric)
    nrows_small = max(1, math.ceil(nsmall / ncols))
    fig = plt.figure(figsize=(15, 4.2 + 0.23 * len(cells) + 3.2 * nrows_small))
    gs = fig.add_gridspec(1 + nrows_small, ncols, height_ratios=[0.23 * len(cells) + 1.5] + [3.0] * nrows_small)

    # Bars: every cell.
    ax = fig.add_subplot(gs[0, :2])
    labels = [c["label"] for c in cells]
    z = np.array([c["z"] for c in cells])
    colors = ["#2a7d4f" if c["detected"] else "#c0392b" for c in cells]
    y = np.arange(len(cells))[::-1]
    ax.barh(y, z, color=colors)
    ax.axvline(zt, color="k", ls="--", lw=1, label=f"threshold z = {zt:.2f} (p = {pt:g})")
    nmax = max(c["null"]["max"] for c in cells)
    ax.axvline(nmax, color="#888", ls=":", lw=1, label=f"largest wrong-key z = {nmax:.2f} "
                                                     f"({report['null_keys']} keys x {len(cells)} files)")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("z (owner's key)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"{report['scheme']} on {report['input'].split('/')[-1]}: z after each attack", fontsize=10)
    ax.grid(axis="x", alpha=0.3)

    # ROC.
    ax = fig.add_subplot(gs[0, 2])
    cmap = plt.get_cmap("tab20")
    for i, (f, cs) in enumerate(sorted(fams.items())):
        fb, tb, fe, te = roc_points(report, cs)
        col = cmap(i % 20)
        ax.plot(fb, tb, color=col, lw=1.4, label=f)
        if len(fe):
            ax.plot(fe, te, color=col, lw=1, ls="--")
    ax.axvline(pt, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlim(1e-15, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false-positive rate (solid: Hoeffding bound; dashed: wrong keys)")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC per attack family", fontsize=10)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    ax.grid(alpha=0.3, which="both")

    # z against strength.
    for i, (f, cs) in enumerate(sorted(numeric.items())):
        ax = fig.add_subplot(gs[1 + i // ncols, i % ncols])
        cs = sorted(cs, key=lambda c: c["strength"])
        s = [c["strength"] for c in cs]
        ax.plot(s, [c["z"] for c in cs], "o-", color="#1f4e79", label="owner's key")
        ax.plot(s, [c["null"]["max"] for c in cs], "x:", color="#888", label="largest wrong-key z")
        ax.axhline(zt, color="k", ls="--", lw=1, label=f"p = {pt:g}")
        ax.set_xlabel(f"{f} strength")
        ax.set_ylabel("z")
        ax.set_ylim(bottom=min(0, min(c["z"] for c in cs) - 1))
        ax.set_title(f, fontsize=10)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _short(name, width):
    """A label for a contributor: without its ``did:<method>:`` prefix, the middle cut when long
    (DIDs of one method share their start)."""
    if name.startswith("did:") and name.count(":") >= 2:
        name = name.split(":", 2)[2]
    if len(name) <= width:
        return name
    half = (width - 3) // 2
    return name[:half] + "..." + name[-half:]


def _totals(report):
    """{contributor: total} of an attribution report, or of a bare totals file."""
    if isinstance(report.get("contributors"), dict):
        return {str(k): float(v) for k, v in report["contributors"].items()}
    if report and all(isinstance(v, (int, float)) for v in report.values()):
        return {str(k): float(v) for k, v in report.items()}
    return None


def attribution(report, out, title=None, values=None, base_dir="."):
    """A summary per contributor of an attribution report.

    ``report`` is the JSON of ``didmark attribute knn-shapley|trak --json``, the dict that
    :func:`didmark.trak` returns, or ``{contributor: total}``. Panels: each contributor's total
    and its share of the positive total (what ``didmark split --weights`` pays on); the value
    per training row of each contributor (total / rows, when the report counts rows); and the
    distribution of per-row values (``values``, or the report's ``values`` array or .npy path).
    """
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = _totals(report)
    if not totals:
        raise ValueError("the report has no per-contributor totals ('contributors')")
    if values is None:
        v = report.get("values")
        if isinstance(v, str):
            path = v if os.path.isabs(v) else os.path.join(base_dir, v)
            values = np.load(path) if os.path.exists(path) else None
        elif v is not None and not isinstance(v, dict):
            values = np.asarray(v, float)
    names = sorted(totals, key=lambda k: totals[k])
    tot = np.array([totals[k] for k in names])
    pos = tot.clip(min=0).sum()
    rows = report.get("contributor_rows") or {}
    panels = 1 + bool(rows) + (values is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 0.9 + max(2.6, 0.32 * len(names))), squeeze=False)
    axes = list(axes[0])

    ax = axes.pop(0)
    y = np.arange(len(names))
    ax.barh(y, tot, color=["#2a7d4f" if t >= 0 else "#c0392b" for t in tot])
    for yi, t in zip(y, tot):
        share = f"{100 * t / pos:.1f}%" if pos > 0 and t > 0 else "0%"
        ax.annotate(share, (t, yi), xytext=(3 if t >= 0 else -3, 0), textcoords="offset points",
                    ha="left" if t >= 0 else "right", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([_short(n, 28) for n in names], fontsize=8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("total value (label: share of the positive total)")
    method = report.get("method", "attribution")
    ax.set_title(title or f"{method}: value per contributor", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.15)

    if rows:
        ax = axes.pop(0)
        n = np.array([float(rows.get(k, 0)) for k in names])
        per_row = np.divide(tot, n, out=np.zeros_like(tot), where=n > 0)
        ax.scatter(n, per_row, color="#1f4e79")
        for k, xi, yi in zip(names, n, per_row):
            ax.annotate(_short(k, 16), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("training rows")
        ax.set_ylabel("value per row")
        ax.set_title("rows against value per row", fontsize=10)
        ax.grid(alpha=0.3)

    if values is not None:
        ax = axes.pop(0)
        vals = np.asarray(values, float)
        ax.hist(vals, bins=min(60, max(10, len(vals) // 20)), color="#5b7fa6")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("value of a training row")
        ax.set_ylabel("rows")
        ax.set_title(f"per-row values (n = {len(vals)}, sum = {vals.sum():.3g})", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    import os

    ap = argparse.ArgumentParser(prog="python3 -m didmark.plot", description=__doc__.splitlines()[0])
    ap.add_argument("report", help="REPORT.json from `didmark robustness -o`, `didmark attribute ... --json`, "
                                   "or a {contributor: total} file")
    ap.add_argument("-o", "--output", required=True, help="PNG to write")
    ap.add_argument("--title", help="title of the first panel")
    ap.add_argument("--values", help="attribution: per-row values (.npy) when the report does not name them")
    a = ap.parse_args(argv)
    with open(a.report) as f:
        report = json.load(f)
    if "cells" in report:
        if not _cells(report):
            print(f"{a.report}: no cell without an error to plot", file=sys.stderr)
            return 1
        plot(report, a.output, a.title)
        return 0
    if _totals(report):
        values = np.load(a.values) if a.values else None
        attribution(report, a.output, a.title, values, base_dir=os.path.dirname(os.path.abspath(a.report)))
        return 0
    print(f"{a.report}: neither a robustness report (cells) nor an attribution report (contributors)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
