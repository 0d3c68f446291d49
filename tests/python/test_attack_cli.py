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
