"""`didmark attack` and `didmark robustness` end to end, through real files.

Structural attacks are checked with a numpy forward pass of BERT-, GPT-2- and Llama-style
models (tests/python/models.py): the attacked file must compute the same function (BERT: the
same hidden states up to one permutation of the embedding, the same pooler output) while its
weights really moved. Value attacks are checked against independent numpy references.
"""
import json
import os
import sys

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
import models  # noqa: E402

IDS = np.array([3, 17, 5, 60, 2, 9, 41, 8, 33, 70])

FAMILIES = [("bert", "gelu"), ("bert", "relu"), ("gpt2", None), ("llama", None)]


def attack(run, src, out, *specs, seed=1, extra=(), check=True):
    args = ["--json", "attack", src, "-o", out, "--seed", seed, *extra]
    for s in specs:
        args += ["--attack", s]
    p = run(*args, check=check)
    return (json.loads(p.stdout) if p.returncode == 0 else None), p


@pytest.fixture(params=FAMILIES, ids=lambda f: f"{f[0]}-{f[1] or 'default'}")
def model(request, tmp_path):
    fam, act = request.param
    kw = {"bias": True} if fam == "llama" else {}
    path, tensors, cfg = models.write_model(str(tmp_path / fam), fam, act=act, **kw)
    return fam, path, tensors, cfg


def moved(a_path, tensors, prefix=""):
    """Fraction of matrix tensors whose bytes changed (a no-op attack would give 0)."""
    a = load_file(a_path)
    mats = [k for k, v in tensors.items() if v.ndim == 2 and v.dtype.kind == "f"]
    diff = [k for k in mats if a[prefix + k].shape != tensors[k].shape or not np.array_equal(a[prefix + k], tensors[k])]
    return len(diff) / len(mats)


# ---- structural attacks keep the function ------------------------------------------------------

STRUCTURAL = ["permute:hidden", "permute:ffn", "permute:heads", "permute:all", "rescale-attn", "dummy:8",
              "rename:bert.", "rescale"]


@pytest.mark.parametrize("spec", STRUCTURAL)
def test_structural_attack_preserves_function(run, model, tmp_path, spec):
    fam, path, tensors, cfg = model
    out = str(tmp_path / "out.safetensors")
    gated_or_relu = fam == "llama" or cfg.get("hidden_act") == "relu"
    if spec == "rescale" and not gated_or_relu:
        rep, p = attack(run, path, out, spec, check=False)
        assert p.returncode == 2 and "gelu" in p.stderr and "rescale:force" in p.stderr
        assert not os.path.exists(out)
        return
    rep, _ = attack(run, path, out, spec)
    assert rep["function_preserving"] is True
    prefix = "bert." if spec.startswith("rename") else ""
    before = models.forward(fam, path, cfg, IDS)
    after = models.forward(fam, out, cfg, IDS, prefix=prefix)
    ok, detail = models.same_function(fam, before, after)
    assert ok, f"{spec} on {fam}: {detail}"
    if not spec.startswith("rename"):
        share = moved(out, tensors)
        assert share > 0.2, "the attack left the weights where they were"
        if spec in ("permute:hidden", "permute:all"):
            assert share == 1.0  # every matrix touches the residual stream
        assert rep["relative_change"] > 0.05 or spec.startswith("dummy")


def test_all_structural_attacks_combined(run, model, tmp_path):
    fam, path, tensors, cfg = model
    out = str(tmp_path / "out.safetensors")
    specs = ["permute:all", "rescale-attn", "dummy:5", "permute:ffn"]
    if fam == "llama" or cfg.get("hidden_act") == "relu":
        specs.append("rescale")
    rep, _ = attack(run, path, out, *specs, seed=9)
    ok, detail = models.same_function(fam, models.forward(fam, path, cfg, IDS), models.forward(fam, out, cfg, IDS))
    assert ok, detail
    assert moved(out, tensors) == 1.0


def test_dummy_neurons_change_shapes_and_cancel(run, tmp_path):
    path, tensors, cfg = models.write_model(str(tmp_path / "m"), "llama")
    out = str(tmp_path / "d.safetensors")
    attack(run, path, out, "dummy:16")
    a = load_file(out)
    assert a["model.layers.0.mlp.up_proj.weight"].shape == (160 + 16, 64)
    assert a["model.layers.0.mlp.gate_proj.weight"].shape == (176, 64)
    assert a["model.layers.0.mlp.down_proj.weight"].shape == (64, 176)
    # Exactly 16 columns of down_proj are zero, and they are not all at the end (shuffled in).
    zero = np.where(~a["model.layers.1.mlp.down_proj.weight"].any(axis=0))[0]
    assert len(zero) == 16 and zero.max() - zero.min() > 16
    # The map that follows the dummies: permuting the FFN afterwards still preserves the function.
    out2 = str(tmp_path / "d2.safetensors")
    attack(run, path, out2, "dummy:16", "permute:all")
    ok, detail = models.same_function("llama", models.forward("llama", path, cfg, IDS),
                                      models.forward("llama", out2, cfg, IDS))
    assert ok, detail


def test_truncate_drops_layers(run, tmp_path):
    path, tensors, cfg = models.write_model(str(tmp_path / "m"), "bert", layers=3)
    out = str(tmp_path / "t.safetensors")
    rep, _ = attack(run, path, out, "truncate:2")
    names = set(load_file(out))
    assert not any(n.startswith("encoder.layer.2.") for n in names)
    assert "encoder.layer.1.output.dense.weight" in names and "embeddings.word_embeddings.weight" in names
    assert len(names) == len(tensors) - 16
    _, p = attack(run, path, str(tmp_path / "t2.safetensors"), "truncate:3", check=False)
    assert p.returncode == 2 and "truncate:3" in p.stderr and "[1, 2]" in p.stderr


def test_heads_need_a_head_count(run, tmp_path):
    path, _, cfg = models.write_model(str(tmp_path / "m"), "bert", config=False)
    out = str(tmp_path / "o.safetensors")
    _, p = attack(run, path, out, "permute:heads", check=False)
    assert p.returncode == 2 and "--heads" in p.stderr and not os.path.exists(out)
    attack(run, path, out, "permute:heads", extra=["--heads", "4"])
    ok, _ = models.same_function("bert", models.forward("bert", path, cfg, IDS), models.forward("bert", out, cfg, IDS))
    assert ok


def test_prefixed_names_and_json_map(run, tmp_path):
    """A prefixed model is recognised; its map, written out and read back with --arch, drives the
    same attack with the same result."""
    folder = tmp_path / "m"
    path, tensors, cfg = models.write_model(str(folder), "gpt2", prefix="transformer.")
    p = run("attack", path, "--show-map")
    m = json.loads(p.stdout)
    assert m["family"] == "gpt2" and m["hidden"]["size"] == 64 and len(m["layers"]) == 2
    assert m["layers"][0]["attention"]["heads"] == 4
    fused = [r for r in m["layers"][0]["attention"]["k"] if r["tensor"].endswith("c_attn.weight")]
    assert fused == [{"tensor": "transformer.h.0.attn.c_attn.weight", "axis": 1, "offset": 64}]
    mp = tmp_path / "map.json"
    mp.write_text(json.dumps(m))
    a1, a2 = str(tmp_path / "a1.safetensors"), str(tmp_path / "a2.safetensors")
    attack(run, path, a1, "permute:all", seed=3)
    attack(run, path, a2, "permute:all", seed=3, extra=["--arch", str(mp)])
    assert open(a1, "rb").read() == open(a2, "rb").read()
    before = models.forward("gpt2", path, cfg, IDS, prefix="transformer.")
    ok, detail = models.same_function("gpt2", before, models.forward("gpt2", a1, cfg, IDS, prefix="transformer."))
    assert ok, detail
    # A map naming a tensor that is not there is refused, naming it.
    m["hidden"]["axes"].append({"tensor": "nope.weight", "axis": 0})
    mp.write_text(json.dumps(m))
    _, p = attack(run, path, str(tmp_path / "a3.safetensors"), "permute:hidden", extra=["--arch", str(mp)], check=False)
    assert p.returncode == 2 and "nope.weight" in p.stderr


def test_structural_attack_deterministic_under_seed(run, tmp_path):
    path, _, _ = models.write_model(str(tmp_path / "m"), "llama")
    outs = [str(tmp_path / f"{i}.safetensors") for i in range(3)]
    attack(run, path, outs[0], "permute:all", "dummy:4", seed=5)
    attack(run, path, outs[1], "permute:all", "dummy:4", seed=5)
    attack(run, path, outs[2], "permute:all", "dummy:4", seed=6)
    b = [open(o, "rb").read() for o in outs]
    assert b[0] == b[1] and b[0] != b[2]


def test_unknown_family_is_refused(run, tmp_path):
    path = str(tmp_path / "x.safetensors")
    save_file({"a.weight": np.ones((4, 4), np.float32)}, path)
    _, p = attack(run, path, str(tmp_path / "o.safetensors"), "permute:all", check=False)
    assert p.returncode == 2 and "BERT" in p.stderr and "--arch" in p.stderr


# ---- value attacks against numpy references -----------------------------------------------------


@pytest.fixture
def bert(tmp_path):
    path, tensors, cfg = models.write_model(str(tmp_path / "bert"), "bert", hidden=64, ffn=256)
    return path, tensors


def mats(t):
    return {k: v for k, v in t.items() if v.ndim >= 2 and v.dtype.kind == "f"}


def test_noise_scales_with_rms(run, bert, tmp_path):
    path, t = bert
    out = str(tmp_path / "n.safetensors")
    rep, _ = attack(run, path, out, "noise:0.1")
    a = load_file(out)
    for k, v in t.items():
        if v.dtype.kind != "f":
            assert np.array_equal(a[k], v)  # integer buffers untouched
            continue
        rel = np.linalg.norm(a[k] - v) / np.linalg.norm(v)
        assert 0.07 < rel < 0.13 or v.size < 200, (k, rel)
    assert 0.095 < rep["relative_change"] < 0.105


def test_cast_f16_stores_f16_and_fp8_rounds(run, bert, tmp_path):
    path, t = bert
    out = str(tmp_path / "h.safetensors")
    attack(run, path, out, "cast:f16")
    with safe_open(out, "np") as f:
        for k in f.keys():
            v = f.get_tensor(k)
            assert v.dtype == (np.float16 if t[k].dtype.kind == "f" else t[k].dtype)
            if v.dtype == np.float16:
                assert np.array_equal(v, t[k].astype(np.float16))  # numpy rounds to nearest even too
    out8 = str(tmp_path / "e4m3.safetensors")
    rep, _ = attack(run, path, out8, "cast:fp8-e4m3")
    a = load_file(out8)
    grid = fp8_e4m3_values()
    for k, v in mats(t).items():
        assert a[k].dtype == np.float32
        ref = round_to_grid(v, grid)
        assert np.array_equal(a[k], ref), k


def fp8_e4m3_values():
    """Every finite positive e4m3fn value, from the format's definition (bias 7, 3 mantissa bits,
    no infinities, S.1111.111 is NaN)."""
    vals = []
    for e in range(16):
        for m in range(8):
            if e == 15 and m == 7:
                continue
            vals.append(m / 8 * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))
    return np.array(sorted(vals))


def round_to_grid(x, grid):
    a = np.abs(x.astype(np.float64))
    hi = np.clip(np.searchsorted(grid, a), 1, len(grid) - 1)
    lo = hi - 1
    dl, dh = a - grid[lo], grid[hi] - a
    pick = np.where(dl < dh, lo, np.where(dh < dl, hi, np.where(lo % 2 == 0, lo, hi)))
    pick = np.where(a >= grid[-1], len(grid) - 1, pick)
    return (np.sign(x) * grid[pick]).astype(np.float32)


def test_int8_per_tensor_and_per_channel(run, bert, tmp_path):
    path, t = bert
    for spec, axis in (("quant:int8", None), ("quant:int8-channel", 1)):
        out = str(tmp_path / f"{spec.replace(':', '_')}.safetensors")
        attack(run, path, out, spec)
        a = load_file(out)
        for k, v in mats(t).items():
            x = v.astype(np.float64)
            amax = np.abs(x).max(axis=axis, keepdims=axis is not None)
            s = amax / 127
            ref = (np.clip(np.round(x / s), -127, 127) * s).astype(np.float32)
            assert np.allclose(a[k], ref, rtol=0, atol=1e-7), (spec, k)
        for k, v in t.items():
            if v.ndim < 2:
                assert np.array_equal(a[k], v)  # vectors stay in float


def test_int4_groups(run, bert, tmp_path):
    path, t = bert
    out = str(tmp_path / "q4.safetensors")
    attack(run, path, out, "quant:int4:g32")
    a = load_file(out)
    for k, v in mats(t).items():
        g = a[k].reshape(v.shape[0], -1, 32) if v.shape[-1] % 32 == 0 else None
        if g is None:
            continue
        assert max(len(np.unique(row)) for row in g.reshape(-1, 32)) <= 16
        x = v.astype(np.float64).reshape(-1, 32)
        lo, hi = np.minimum(x.min(1, keepdims=True), 0), np.maximum(x.max(1, keepdims=True), 0)
        s = (hi - lo) / 15
        z = np.round(-lo / s)
        ref = ((np.clip(np.round(x / s) + z, 0, 15) - z) * s).reshape(v.shape).astype(np.float32)
        assert np.allclose(a[k], ref, atol=1e-7), k


def test_prune_magnitude_and_2of4(run, bert, tmp_path):
    path, t = bert
    out = str(tmp_path / "p.safetensors")
    attack(run, path, out, "prune:0.5")
    a = load_file(out)
    for k, v in mats(t).items():
        zero = a[k] == 0
        assert zero.sum() == v.size // 2
        assert np.abs(v[~zero]).min() >= np.abs(v[zero]).max()
        assert np.array_equal(a[k][~zero], v[~zero])
    out = str(tmp_path / "s.safetensors")
    attack(run, path, out, "prune:2of4")
    a = load_file(out)
    for k, v in mats(t).items():
        g, x = a[k].reshape(-1, 4), v.reshape(-1, 4)
        assert ((g == 0).sum(1) >= 2).all()
        kept = np.sort(np.abs(x), 1)[:, 2:]
        assert np.allclose(np.sort(np.abs(g), 1)[:, 2:], kept)


def test_merges(run, tmp_path):
    p1, t1, _ = models.write_model(str(tmp_path / "a"), "llama", seed=1)
    p2, t2, _ = models.write_model(str(tmp_path / "b"), "llama", seed=2)
    out = str(tmp_path / "m.safetensors")
    attack(run, p1, out, "merge:" + p2 + ":0.25")
    a = load_file(out)
    for k in t1:
        assert np.allclose(a[k], 0.75 * t1[k].astype(np.float64) + 0.25 * t2[k], atol=1e-7)
    out = str(tmp_path / "t.safetensors")
    attack(run, p1, out, "merge-ties:" + p2 + ":0.5:0.3")
    a = load_file(out)
    for k in t1:
        tau = t1[k].astype(np.float64) - t2[k]
        cut = np.sort(np.abs(tau).ravel())[::-1][int(np.ceil(0.3 * tau.size)) - 1]
        ref = t2[k] + np.where(np.abs(tau) >= cut, 0.5 * tau, 0)
        assert np.allclose(a[k], ref, atol=1e-6), k
    # A partner of another architecture: refused before anything is written.
    p3, _, _ = models.write_model(str(tmp_path / "c"), "llama", hidden=32, heads=4)
    bad = str(tmp_path / "bad.safetensors")
    _, p = attack(run, p1, bad, "merge:" + p3 + ":0.5", check=False)
    assert p.returncode == 2 and "another architecture" in p.stderr and "merge:" in p.stderr
    assert not os.path.exists(bad)


@pytest.mark.parametrize("spec,needle", [
    ("noise", "noise:REL"), ("noise:-1", "out of range"), ("noise:abc", "not a number"),
    ("prune:1.5", "out of range"), ("prune:4of2", "NofM"), ("quant:int3", "quant:int8"),
    ("quant:int4:x7", "gG"), ("cast:f12", "unknown cast"), ("permute:rows", "hidden, ffn"),
    ("merge:x.safetensors:2", "out of range"), ("dummy:0", "out of range"), ("fold:3", "unknown attack"),
])
def test_bad_specs_write_nothing(run, bert, tmp_path, spec, needle):
    path, _ = bert
    out = str(tmp_path / "o.safetensors")
    _, p = attack(run, path, out, "noise:0.1", spec, check=False)
    assert p.returncode == 2 and needle in p.stderr and spec in p.stderr, p.stderr
    assert not os.path.exists(out)


def test_value_attacks_deterministic(run, bert, tmp_path):
    path, _ = bert
    o = [str(tmp_path / f"{i}.safetensors") for i in range(3)]
    for f, seed in zip(o, (4, 4, 5)):
        attack(run, path, f, "noise:0.05", "prune:0.3", "quant:int4:g64", seed=seed)
    b = [open(f, "rb").read() for f in o]
    assert b[0] == b[1] and b[0] != b[2]


def test_sharded_round_trip(run, tmp_path):
    t = models.llama_tensors()
    folder = tmp_path / "sh"
    folder.mkdir()
    names = sorted(t)
    half = len(names) // 2
    wm = {}
    for i, part in enumerate((names[:half], names[half:])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: t[k] for k in part}, str(folder / shard))
        wm.update({k: shard for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    out = tmp_path / "out"
    rep, _ = attack(run, str(folder), str(out), "permute:all", "rename:x.", extra=["--heads", "4", "--kv-heads", "2"])
    idx = json.loads((out / "model.safetensors.index.json").read_text())
    assert sorted(idx["weight_map"]) == sorted("x." + k for k in t)
    got = {}
    for shard in set(idx["weight_map"].values()):
        got.update(load_file(str(out / shard)))
    assert set(got) == set(idx["weight_map"])
    assert all(idx["weight_map"]["x." + k] == wm[k] for k in t)  # tensors stay in their shard
    path = str(tmp_path / "whole.safetensors")
    save_file({k[2:]: v for k, v in got.items()}, path)
    cfg = models.config_for("llama", 4, 2)
    orig = str(tmp_path / "orig.safetensors")
    save_file(t, orig)
    ok, detail = models.same_function("llama", models.forward("llama", orig, cfg, IDS),
                                      models.forward("llama", path, cfg, IDS))
    assert ok, detail


def test_remark_puts_a_second_owner_on_top(run, tmp_path):
    path, _, _ = models.write_model(str(tmp_path / "m"), "bert", hidden=384, ffn=1536, layers=2, vocab=500)
    alice, bob = tmp_path / "alice.id.json", tmp_path / "bob.id.json"
    run("id", "new", "-o", alice)
    run("id", "new", "-o", bob)
    marked = str(tmp_path / "marked.safetensors")
    run("embed", path, "-o", marked, "--id", alice)
    out = str(tmp_path / "both.safetensors")
    rep, _ = attack(run, marked, out, f"remark:{bob}")
    assert rep["attacks"][0]["tensors_changed"] > 0
    for who in (alice, bob):
        v = json.loads(run("--json", "verify", out, "--id", who).stdout)
        assert v["verdicts"][0]["detected"], who


# ---- robustness grids --------------------------------------------------------------------------

SCHEMA = os.path.join(os.environ.get("DIDMARK_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                      "docs", "json", "robustness.schema.json")
PLOT = os.path.join(os.path.dirname(SCHEMA), "..", "..", "python", "didmark", "plot.py")


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """A BERT-style model of 3.6M marked elements (expected z about 9.5) and its owner."""
    import subprocess
    cli = os.environ.get("DIDMARK_CLI")
    if not cli:
        pytest.skip("DIDMARK_CLI not set")
    d = tmp_path_factory.mktemp("rob")
    path, _, _ = models.write_model(str(d / "m"), "bert", hidden=384, ffn=1536, layers=2, vocab=500, heads=6)
    alice, bob = str(d / "alice.id.json"), str(d / "bob.id.json")
    for who in (alice, bob):
        subprocess.run([cli, "id", "new", "-o", who], check=True, capture_output=True)
    out = str(d / "m" / "marked.safetensors")
    subprocess.run([cli, "embed", path, "-o", out, "--id", alice], check=True, capture_output=True)
    return d, path, out, alice, bob


def grid_file(d, obj):
    p = d / f"grid{abs(hash(json.dumps(obj)))}.json"
    p.write_text(json.dumps(obj))
    return str(p)


GRID = {"families": [{"name": "noise", "template": "noise:{}", "strengths": [0.1, 0.5]}],
        "cells": [{"family": "none"}, {"family": "permute", "attacks": ["permute:all"]},
                  {"family": "permute+quant", "attacks": ["permute:all", "quant:int8"]},
                  {"family": "broken", "attacks": ["truncate:5"]}]}


def test_robustness_report(run, marked):
    d, _, out, alice, _ = marked
    rep_path = d / "r.json"
    p = run("--json", "robustness", out, "--id", alice, "--attacks", grid_file(d, GRID), "--null-keys", 300,
            "-o", rep_path)
    rep = json.loads(rep_path.read_text())
    assert json.loads(p.stdout)["cells"] == rep["cells"]
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema:
        jsonschema.validate(rep, json.load(open(SCHEMA)))
    cells = {c["label"]: c for c in rep["cells"]}
    assert list(cells) == ["noise:0.1", "noise:0.5", "none", "permute:all", "permute:all + quant:int8", "truncate:5"]
    none, perm = cells["none"], cells["permute:all"]
    # Expected z about 9.5 with a fresh random key each run (sd about 1): 6 and 14 are 3.5 sd out.
    # (8 failed once in CI-like runs: z 7.9.)
    assert none["detected"] and 6 < none["z"] < 14 and none["relative_change"] == 0
    assert not perm["detected"] and perm["z"] < 4 and perm["relative_change"] > 0.5
    assert cells["noise:0.5"]["detected"] and cells["noise:0.5"]["z"] < none["z"]
    assert 0.45 < cells["noise:0.5"]["relative_change"] < 0.55
    assert "error" in cells["truncate:5"] and "[1, 1]" in cells["truncate:5"]["error"]
    # The null side: 300 wrong keys per file, N(0, 1)-like, none anywhere near the threshold.
    for c in (none, perm):
        n = c["null"]
        assert n["count"] == 300 and len(n["z"]) == 300
        assert abs(n["mean"]) < 0.25 and 0.8 < n["sd"] < 1.2 and n["max"] < 5
        assert n["empirical_fpr"] == 0
        assert c["thresholds"]["fpr_1e-3"]["extrapolated"] is True  # 300 keys < 10 / 1e-3
    assert none["tpr"]["fpr_1e-6"] == {"bound": 1.0, "empirical": 1.0}
    assert perm["tpr"]["fpr_1e-3"]["bound"] == 0.0
    assert rep["null_keys"] == 300 and rep["realigned"] is False and rep["architecture"]["family"] == "bert"
    # Deterministic: the same run gives the same figures.
    rep2 = json.loads(run("--json", "robustness", out, "--id", alice, "--attacks", grid_file(d, GRID),
                          "--null-keys", 300).stdout)
    assert [c.get("z") for c in rep2["cells"]] == [c.get("z") for c in rep["cells"]]
    assert rep2["cells"][2]["null"]["z"] == rep["cells"][2]["null"]["z"]


def test_robustness_registry_fidelity_and_plot(run, marked, tmp_path):
    d, _, out, alice, bob = marked
    reg = tmp_path / "reg.jsonl"
    reg.write_text("".join(run("id", "export-key", who).stdout.strip() + "\n" for who in (alice, bob)))
    did = json.load(open(alice))["did"]
    grid = grid_file(d, {"cells": [{"family": "none"}, {"family": "noise", "attacks": ["noise:0.2"], "strength": 0.2}]})
    fid = f"{sys.executable} -c \"import sys, os; print('size', os.path.getsize(sys.argv[1]))\" {{}}"
    png = tmp_path / "r.png"
    rep_path = tmp_path / "r.json"
    args = ["robustness", out, "--registry", reg, "--did", did, "--attacks", grid, "--null-keys", 50,
            "--fidelity", fid, "-o", rep_path]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", png]
    except ImportError:
        png = None
    p = run(*args)
    assert "none" in p.stdout and "z" in p.stdout  # the human table
    rep = json.loads(rep_path.read_text())
    c = rep["cells"][0]
    assert rep["owner"] == did and c["detected"]
    assert len(c["others"]) == 1 and abs(c["others"][0]["z"]) < 5  # bob's key: a real-world wrong key
    assert c["fidelity"] == os.path.getsize(out)
    if png:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000


def test_robustness_refusals(run, marked, tmp_path):
    d, _, out, alice, _ = marked
    # A model file is not a sketch: refused, naming it.
    p = run("robustness", out, "--id", alice, "--sketch", out, check=False)
    assert p.returncode == 2 and str(out) in p.stderr
    bad = tmp_path / "g.json"
    bad.write_text('{"families": [{"template": "noise:{}"}]}')
    p = run("robustness", out, "--id", alice, "--attacks", bad, check=False)
    assert p.returncode == 2 and str(bad) in p.stderr and "strengths" in p.stderr
    bad.write_text('{"cells": [{"family": "x", "attacks": ["noise:99"]}]}')
    p = run("robustness", out, "--id", alice, "--attacks", bad, "-o", tmp_path / "r.json", check=False)
    assert p.returncode == 2 and "noise:99" in p.stderr and not (tmp_path / "r.json").exists()
    bad.write_text('{"cells": [{"family": "m", "attacks": ["merge:{original}:0.5"]}]}')
    p = run("robustness", out, "--id", alice, "--attacks", bad, check=False)
    assert p.returncode == 2 and "--original" in p.stderr


def test_plot_script_draws_from_json(tmp_path):
    pytest.importorskip("matplotlib")
    import subprocess
    rng = np.random.default_rng(0)
    cells = []
    for fam, strengths in (("noise", [0.1, 0.5, 1.0]), ("permute", [0])):
        for s in strengths:
            z = 20 - 10 * s if fam == "noise" else 1.0
            cells.append({"family": fam, "label": f"{fam}:{s}", "attacks": [f"{fam}:{s}"], "strength": s, "z": z,
                          "detected": z > 6.44, "trials": [{"seed": 1, "z": z, "p_value": 1, "detected": z > 6.44,
                                                            "relative_change": s}],
                          "null": {"count": 100, "mean": 0, "sd": 1, "max": 2.5, "empirical_fpr": 0,
                                   "z": rng.standard_normal(100).tolist()}})
    rep = {"input": "m.safetensors", "scheme": "spread-spectrum", "z_threshold": 6.44, "p_threshold": 1e-9,
           "null_keys": 100, "cells": cells}
    (tmp_path / "r.json").write_text(json.dumps(rep))
    subprocess.run([sys.executable, PLOT, str(tmp_path / "r.json"), "-o", str(tmp_path / "r.png")], check=True)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    from importlib import util
    spec = util.spec_from_file_location("didmark_plot", PLOT)
    mod = util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fb, tb, fe, te = mod.roc_points(rep, [cells[3]])
    assert tb[0] == 1.0 and tb[-1] == 0.0  # z = 1: detected only at thresholds below 1
    assert abs(fb[np.argmax(tb < 1)] - np.exp(-1 / 2)) < 0.01


# ---- embedding arrays --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def marked_array(tmp_path_factory):
    import subprocess
    cli = os.environ.get("DIDMARK_CLI")
    if not cli:
        pytest.skip("DIDMARK_CLI not set")
    d = tmp_path_factory.mktemp("arr")
    x, ids = d / "x.npy", d / "ids.npy"
    subprocess.run([cli, "synth", "array", "-o", x, "--rows", "6000", "--dim", "128", "--ids-out", ids], check=True,
                   capture_output=True)
    alice = str(d / "alice.id.json")
    subprocess.run([cli, "id", "new", "-o", alice], check=True, capture_output=True)
    m = d / "m.npy"
    subprocess.run([cli, "embed", x, "-o", m, "--id", alice, "--ids", ids], check=True, capture_output=True)
    return d, m, ids, alice


@pytest.mark.parametrize("spec", ["noise:0.1", "cast:f16", "cast:bf16", "quant:int8-dim", "quant:binary", "rotate",
                                  "permute-dims", "pca:16", "subset:0.3"])
def test_array_attacks(run, marked_array, tmp_path, spec):
    d, m, ids, alice = marked_array
    out = tmp_path / "a.npy"
    rep = json.loads(run("--json", "attack", m, "-o", out, "--ids", ids, "--attack", spec).stdout)
    x0, i0 = np.load(m), np.load(ids)
    x1, i1 = np.load(out), np.load(rep["ids"])
    assert rep["ids"] == str(tmp_path / "a.ids.npy")
    assert x1.shape[1] == 128 and len(i1) == len(x1)
    assert x1.dtype == (np.float16 if spec == "cast:f16" else np.float32)
    pos = {v: k for k, v in enumerate(i0)}
    x0 = x0[[pos[v] for v in i1]].astype(np.float64)  # the original rows, in the attacked order
    x1 = x1.astype(np.float64)
    g0, g1 = x0[:50] @ x0[:50].T, x1[:50] @ x1[:50].T
    if spec in ("rotate", "permute-dims", "subset:0.3"):
        assert np.allclose(g0, g1, atol=1e-5) and rep["recall_at_10"] > 0.999
        assert spec == "subset:0.3" or np.abs(x1 - x0).max() > 0.01
    if spec == "subset:0.3":
        assert len(x1) == 1800 and len(set(i1.tolist())) == 1800
    if spec == "quant:binary":
        assert (np.abs(np.abs(x1) - np.abs(x1[:, :1])) < 1e-6).all()
    if spec == "pca:16":
        c = x1 - x1.mean(0)
        assert np.linalg.matrix_rank(c, tol=1e-4) == 16
    v = run("--json", "verify", out, "--id", alice, "--ids", rep["ids"], check=False)
    detected = json.loads(v.stdout)["verdicts"][0]["detected"]
    if spec in ("rotate", "permute-dims"):
        assert not detected  # the hole issue 12 closes: positions moved, similarities kept
    elif spec not in ("pca:16", "quant:binary"):
        assert detected


def test_array_robustness(run, marked_array, tmp_path):
    d, m, ids, alice = marked_array
    rep = json.loads(run("--json", "robustness", m, "--ids", ids, "--id", alice, "--null-keys", 100).stdout)
    cells = {c["label"]: c for c in rep["cells"]}
    assert rep["kind"] == "array" and rep["rows"] == 6000
    assert cells["none"]["detected"] and cells["none"]["recall_at_10"] == 1.0
    assert cells["subset:0.5"]["detected"]
    assert not cells["rotate"]["detected"] and cells["rotate"]["recall_at_10"] > 0.999
    assert cells["cast:f16"]["detected"]


# ---- fine-tuning (optional: torch and transformers) -------------------------------------------

FINETUNE = os.path.join(os.path.dirname(PLOT), "finetune.py")


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_finetune_attack(tmp_path, mode):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import subprocess
    path, t, _ = models.write_model(str(tmp_path / "m"), "bert")
    out = str(tmp_path / "ft.safetensors")
    p = subprocess.run([sys.executable, FINETUNE, path, "-o", out, "--steps", "5", "--mode", mode, "--seed", "1"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["steps"] == 5 and r["mode"] == mode
    a = load_file(out)
    assert set(a) == set(t) and all(a[k].shape == t[k].shape and a[k].dtype == t[k].dtype for k in t)
    moved_ = [k for k in t if t[k].dtype.kind == "f" and t[k].ndim == 2 and not np.array_equal(a[k], t[k])]
    assert len(moved_) >= 8  # every attention and MLP matrix trained
    assert np.array_equal(a["embeddings.position_ids"], t["embeddings.position_ids"])
    rel = np.sqrt(sum(((a[k].astype(float) - t[k]) ** 2).sum() for k in moved_) /
                  sum((t[k].astype(float) ** 2).sum() for k in moved_))
    assert 1e-5 < rel < 0.2


def test_attack_a_torch_file_end_to_end(run, tmp_path):
    """A .pt written by torch.save: marked, attacked (noise, cast, permutation) into a .pt that
    PyTorch's default torch.load (weights_only=True) opens, and still verified."""
    torch = pytest.importorskip("torch")
    if "needs a build" in run("formats").stdout:
        pytest.skip("built without LibTorch")
    g = torch.Generator().manual_seed(3)
    sd = {f"encoder.layer.{i}.intermediate.dense.weight": torch.randn(512, 256, generator=g) * 0.02
          for i in range(8)}
    sd["embeddings.position_ids"] = torch.arange(64)
    src = tmp_path / "pytorch_model.bin"
    torch.save(sd, src)
    run("id", "new", "-o", tmp_path / "a.id.json")
    run("embed", src, "-o", tmp_path / "marked.bin", "--id", tmp_path / "a.id.json", "--strength", 0.01)
    rep, _ = attack(run, tmp_path / "marked.bin", tmp_path / "stolen.bin", "noise:0.01", "cast:bf16")
    assert rep is not None
    loaded = torch.load(tmp_path / "stolen.bin")  # weights_only=True is the default
    assert set(loaded) == set(sd) and loaded["embeddings.position_ids"].equal(sd["embeddings.position_ids"])
    assert loaded["encoder.layer.0.intermediate.dense.weight"].shape == (512, 256)
    v = json.loads(run("--json", "verify", tmp_path / "stolen.bin", "--id", tmp_path / "a.id.json").stdout)
    assert v["verdicts"][0]["detected"] and v["format"] == "pt"
