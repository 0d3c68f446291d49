"""The installed package: `import didmark` from site-packages, the `didmark` console script and
`python3 -m didmark` running the bundled CLI, one version everywhere, the LibTorch plugin found,
and `python3 -m didmark.plot` drawing from an installed package. With DIDMARK_REQUIRE_INSTALLED=1
(scripts/test.sh) the module must come from an installed package, not the build tree."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

didmark = pytest.importorskip("didmark", reason="the didmark Python module is not built (DIDMARK_PYTHON)")

SOURCE = os.environ.get("DIDMARK_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
INSTALLED = os.path.basename(os.path.dirname(os.path.dirname(didmark.__file__))) in ("site-packages", "dist-packages")


def project_version():
    text = open(os.path.join(SOURCE, "CMakeLists.txt")).read()
    return re.search(r"project\(didmark VERSION ([0-9][0-9.]*)", text).group(1)


def test_installed_when_required():
    if os.environ.get("DIDMARK_REQUIRE_INSTALLED") == "1":
        assert INSTALLED, f"didmark was imported from {didmark.__file__}, not an installed package"
        # From a site-packages (the venv may live under build/), not from the build tree's python/.
        assert "site-packages" in didmark.__file__.split(os.sep), didmark.__file__


def test_one_version():
    assert didmark.__version__ == project_version()
    if INSTALLED:
        from importlib.metadata import version

        assert version("didmark") == project_version()


def test_console_script_and_module_run_the_cli(tmp_path):
    if not INSTALLED:
        pytest.skip("the console script exists only in an installed package")
    exe = didmark.cli_path()
    assert exe and os.access(exe, os.X_OK)
    script = shutil.which("didmark", path=os.path.dirname(sys.executable))
    assert script, "no `didmark` console script beside the interpreter"
    for cmd in ([script, "--version"], [sys.executable, "-m", "didmark", "--version"]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout.strip() == f"didmark {project_version()}", (cmd, p.stdout, p.stderr)
    # Exit codes pass through: 2 for an error, JSON on stdout.
    p = subprocess.run([script, "--json", "verify", str(tmp_path / "absent.safetensors"), "--id", "x.json"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "error" in json.loads(p.stdout)
    # The script's CLI and the module agree on a file.
    ident = tmp_path / "a.id.json"
    subprocess.run([script, "id", "new", "-o", str(ident)], check=True, capture_output=True)
    alice = didmark.Identity.load(str(ident))
    w = {"w": (np.random.default_rng(0).standard_normal((2048, 2048)) * 0.02).astype(np.float32)}
    marked, _ = didmark.embed(w, alice)
    st = pytest.importorskip("safetensors.numpy")
    st.save_file(marked, str(tmp_path / "m.safetensors"))
    v = json.loads(subprocess.run([script, "--json", "verify", str(tmp_path / "m.safetensors"), "--id", str(ident)],
                                  capture_output=True, text=True, check=True).stdout)
    assert v["detected"] == [alice.did]


def test_torch_plugin_is_found_when_installed():
    if not INSTALLED:
        pytest.skip("build tree")
    plugin = os.path.join(os.path.dirname(didmark.__file__), "bin", "libdidmark_torch.so")
    if os.path.exists(plugin):
        assert os.environ.get("DIDMARK_TORCH_PLUGIN") == plugin or os.environ.get("DIDMARK_TORCH_PLUGIN")


def test_torch_files_through_the_module(tmp_path):
    torch = pytest.importorskip("torch")
    alice = didmark.Identity.from_seed(b"t" * 32)
    src, out = tmp_path / "m.pt", tmp_path / "out.pt"
    torch.save({"w": torch.randn(2048, 1024) * 0.02, "step": 3}, src)
    try:
        rep = didmark.embed_file(src, out, alice, strength=0.02)
    except didmark.Error as e:
        if e.code == "unsupported":
            pytest.skip(f"no LibTorch plugin in this build: {e}")
        raise
    assert rep["tensors_marked"] == 1
    # Loaded in the same process that imported torch (two libtorch builds side by side).
    back = torch.load(out)
    assert back["step"] == 3 and back["w"].shape == (2048, 1024)
    assert didmark.verify_file(out, key=alice.watermark_key(), did=alice.did)["detected"] == [alice.did]


def robustness_report(tmp_path):
    """A small robustness report made by the CLI, or None when this build lacks the command."""
    exe = didmark.cli_path() or os.environ.get("DIDMARK_CLI") or shutil.which("didmark")
    if not exe:
        return None
    ident = tmp_path / "r.id.json"
    subprocess.run([exe, "id", "new", "-o", str(ident)], check=True, capture_output=True)
    alice = didmark.Identity.load(str(ident))
    rng = np.random.default_rng(1)
    w = {f"layers.{i}.weight": (rng.standard_normal((1024, 1024)) * 0.02).astype(np.float32) for i in range(4)}
    marked, _ = didmark.embed(w, alice)
    st = pytest.importorskip("safetensors.numpy")
    st.save_file(marked, str(tmp_path / "m.safetensors"))
    report, grid = tmp_path / "report.json", tmp_path / "grid.json"
    grid.write_text(json.dumps({
        "families": [{"name": "noise", "template": "noise:{}", "strengths": [0.1, 0.5, 1, 2]},
                     {"name": "prune", "template": "prune:{}", "strengths": [0.3, 0.6, 0.9]}],
        "cells": [{"family": "none"}, {"family": "int8", "attacks": ["quant:int8"]}]}))
    p = subprocess.run([exe, "robustness", str(tmp_path / "m.safetensors"), "--id", str(ident), "-o", str(report),
                        "--attacks", str(grid), "--null-keys", "64"], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"didmark robustness failed here: {p.stderr[-300:]}")
    return report


def test_plot_module_runs_from_the_package(tmp_path):
    pytest.importorskip("matplotlib")
    # Attribution summary from a knn_shapley run: totals per contributor.
    rng = np.random.default_rng(0)
    x, q = rng.standard_normal((400, 6)).astype(np.float32), rng.standard_normal((50, 6)).astype(np.float32)
    y, yq = (x[:, 0] > 0).astype(np.int64), (q[:, 0] > 0).astype(np.int64)
    owners = np.repeat(np.arange(4), 100)
    y[owners == 3] = 1 - y[owners == 3]  # one contributor's labels are wrong: a negative value
    values, totals = didmark.knn_shapley(x, y, q, yq, k=5, contributors=owners)
    assert totals[3] < 0 < min(totals[0], totals[1], totals[2])
    report = {"method": "knn-shapley", "contributors": {str(k): v for k, v in totals.items()},
              "contributor_rows": {str(k): 100 for k in totals}, "values": values.tolist()}
    (tmp_path / "attr.json").write_text(json.dumps(report))
    p = subprocess.run([sys.executable, "-m", "didmark.plot", str(tmp_path / "attr.json"), "-o",
                        str(tmp_path / "attr.png")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "attr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = robustness_report(tmp_path)
    if rep is not None:
        p = subprocess.run([sys.executable, "-m", "didmark.plot", str(rep), "-o", str(tmp_path / "rob.png")],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert (tmp_path / "rob.png").stat().st_size > 10000
    (tmp_path / "neither.json").write_text("{\"x\": [1]}")
    p = subprocess.run([sys.executable, "-m", "didmark.plot", str(tmp_path / "neither.json"), "-o",
                        str(tmp_path / "n.png")], capture_output=True, text=True)
    assert p.returncode == 1 and "neither" in p.stderr
