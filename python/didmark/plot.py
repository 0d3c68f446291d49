"""Plots of a `didmark robustness` report: ``python3 -m didmark.plot REPORT.json -o REPORT.png``.

Three panels, drawn from the JSON alone (numpy and matplotlib, nothing else):

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


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m didmark.plot", description=__doc__.splitlines()[0])
    ap.add_argument("report", help="REPORT.json from `didmark robustness -o`")
    ap.add_argument("-o", "--output", required=True, help="PNG to write")
    ap.add_argument("--title", help="title of the bar panel")
    a = ap.parse_args(argv)
    with open(a.report) as f:
        report = json.load(f)
    if not _cells(report):
        print(f"{a.report}: no cell without an error to plot", file=sys.stderr)
        return 1
    plot(report, a.output, a.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
