#!/usr/bin/env python3
"""Exact KNN-Shapley: the didmark CLI next to a straightforward NumPy implementation of the
same recursion, on the same data, in one run; prints both timings, their ratio and the largest
difference between the two sets of values.

The NumPy reference is what one would write by hand: per query, squared distances with one
matrix product (||x||^2 - 2 q.x, BLAS), a stable argsort (ties by index), then the recursion
s_N = 1[y_N = y] / N, s_i = s_{i+1} + (1[y_i = y] - 1[y_{i+1} = y]) / K * min(K, i) / i as a
reversed cumulative sum over the sorted ranks (NumPy's fast form of the loop; --python-loop
runs the literal Python loop over a few queries to show what the loop itself costs).

    python3 bench/knn_shapley_vs_numpy.py --didmark build/bin/didmark            # N=1e5, Q=100, D=128
    python3 bench/knn_shapley_vs_numpy.py --didmark build/bin/didmark -n 1000000 -q 1000 -d 384 --device cuda
"""
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np


def numpy_knn_shapley(x, y, q, yq, k):
    n = len(x)
    xsq = (x.astype(np.float64) ** 2).sum(axis=1).astype(x.dtype)
    ranks = np.arange(1, n, dtype=np.float64)  # i = 1 .. n-1
    weight = np.minimum(k, ranks) / (k * ranks)
    values = np.zeros(n)
    for qi in range(len(q)):
        d = xsq - 2 * (x @ q[qi])
        order = np.argsort(d, kind="stable")
        match = (y[order] == yq[qi]).astype(np.float64)
        steps = (match[:-1] - match[1:]) * weight  # s_i - s_{i+1} for i = 1 .. n-1
        s = np.empty(n)
        s[n - 1] = match[n - 1] * min(k, n) / (k * n)
        s[: n - 1] = s[n - 1] + np.cumsum(steps[::-1])[::-1]
        values[order] += s
    return values / len(q)


def python_loop_knn_shapley(x, y, q, yq, k):
    n = len(x)
    xsq = (x.astype(np.float64) ** 2).sum(axis=1).astype(x.dtype)
    values = np.zeros(n)
    for qi in range(len(q)):
        order = np.argsort(xsq - 2 * (x @ q[qi]), kind="stable")
        lab = y[order].tolist()
        target = int(yq[qi])
        s = [0.0] * n
        s[n - 1] = (lab[n - 1] == target) * min(k, n) / (k * n)
        for i in range(n - 1, 0, -1):
            s[i - 1] = s[i] + ((lab[i - 1] == target) - (lab[i] == target)) / k * min(k, i) / i
        values[order] += np.asarray(s)
    return values / len(q)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--didmark", default=os.environ.get("DIDMARK_CLI", "build/bin/didmark"))
    ap.add_argument("-n", type=int, default=100_000, help="training rows")
    ap.add_argument("-q", type=int, default=100, help="queries")
    ap.add_argument("-d", type=int, default=128, help="dimension")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; the best is reported")
    ap.add_argument("--device", default="cpu", help="didmark --device (cpu or cuda)")
    ap.add_argument("--no-numpy", action="store_true", help="time didmark only (large GPU runs)")
    ap.add_argument("--python-loop", type=int, default=0, metavar="Q",
                    help="also time the literal Python loop on Q queries (scaled to all queries)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.d), dtype=np.float32)
    y = rng.integers(0, args.classes, args.n)
    q = rng.standard_normal((args.q, args.d), dtype=np.float32)
    yq = rng.integers(0, args.classes, args.q)

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, arr in (("x", x), ("y", y), ("q", q), ("yq", yq)):
            paths[name] = os.path.join(tmp, name + ".npy")
            np.save(paths[name], arr)
        out = os.path.join(tmp, "values.npy")
        cmd = [args.didmark, "--json", "--device", args.device, "attribute", "knn-shapley", "--train", paths["x"],
               "--train-labels", paths["y"], "--test", paths["q"], "--test-labels", paths["yq"], "-k", str(args.k),
               "-o", out, "--force"]
        wall, inside = [], []
        report = None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, check=True)
            wall.append(time.perf_counter() - t0)
            report = json.loads(p.stdout)
            inside.append(report["seconds"])
        ours = np.load(out)

    print(f"KNN-Shapley, N = {args.n}, queries = {args.q}, D = {args.d}, K = {args.k}, f32 inputs")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; numpy {np.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"didmark ({report['backend']}): {min(wall):.3f} s wall for the CLI process "
          f"({min(inside):.3f} s inside knn_shapley)")
    if args.no_numpy:
        return
    ref_t = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = numpy_knn_shapley(x, y, q, yq, args.k)
        ref_t.append(time.perf_counter() - t0)
    print(f"numpy (sort + recursion per query): {min(ref_t):.3f} s")
    print(f"ratio numpy / didmark: {min(ref_t) / min(wall):.1f}x (CLI wall), "
          f"{min(ref_t) / min(inside):.1f}x (compute)")
    diff = np.abs(ours - ref).max()
    print(f"largest |difference| of the values: {diff:.3g} (values up to {np.abs(ref).max():.3g})")
    if args.python_loop:
        sub = args.python_loop
        t0 = time.perf_counter()
        python_loop_knn_shapley(x, y, q[:sub], yq[:sub], args.k)
        t = (time.perf_counter() - t0) * args.q / sub
        print(f"python loop (sort + element loop), scaled from {sub} queries: {t:.1f} s "
              f"({t / min(wall):.0f}x the CLI)")


if __name__ == "__main__":
    main()
