"""Checkpoints through the CLI: embed / verify / scan on safetensors (files made by the Python
`safetensors` library), sharded checkpoints, torch.save files, single .npy arrays; atomic
writes under kill -9; the malformed-file corpus."""
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy as stnp

import torch_files

DATA = Path(__file__).resolve().parents[1] / "data" / "safetensors"
# Small test tensors need a strong mark to reach p <= 1e-9 (z = strength * sqrt(elements)).
STRONG = ["--strength", "0.02"]


@pytest.fixture(scope="module")
def owners(cli, tmp_path_factory):
    d = tmp_path_factory.mktemp("owners")
    ids, lines = {}, []
    for name in ("alice", "bob", "carol"):
        f = d / f"{name}.id.json"
        did = subprocess.run([cli, "id", "new", "-o", f], capture_output=True, text=True, check=True).stdout.strip()
        ids[name] = (f, did)
        lines.append(subprocess.run([cli, "id", "export-key", f], capture_output=True, text=True,
                                    check=True).stdout.strip())
    reg = d / "registry.jsonl"
    reg.write_text("\n".join(lines) + "\n")
    return {"ids": ids, "registry": reg}


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns (round to nearest even) as uint16."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def python_checkpoint(path, rng):
    """A checkpoint written by the safetensors library: F32, F16, BF16, an int buffer, metadata."""
    tensors = {
        "encoder.layer.0.attention.query.weight": rng.standard_normal((512, 512)).astype(np.float32) * 0.02,
        "encoder.layer.0.output.dense.weight": (rng.standard_normal((512, 256)) * 0.02).astype(np.float16),
        "encoder.layer.0.output.LayerNorm.weight": np.ones(512, np.float32),
        "encoder.layer.0.output.dense.bias": np.zeros(512, np.float32),
        "embeddings.position_ids": np.arange(512, dtype=np.int64)[None, :],
    }
    bf = bf16_bits(rng.standard_normal((256, 512)) * 0.02)
    specs = {k: safetensors.TensorSpec(dtype=v.dtype.name, shape=list(v.shape), data_ptr=v.ctypes.data,
                                       data_len=v.nbytes) for k, v in tensors.items()}
    specs["decoder.proj.weight"] = safetensors.TensorSpec(dtype="bfloat16", shape=[256, 512],
                                                          data_ptr=bf.ctypes.data, data_len=bf.nbytes)
    meta = {"format": "pt", "source": "unit test"}
    safetensors.serialize_file(specs, str(path), meta)
    return meta


def raw_tensors(path):
    return {name: (info["dtype"], info["shape"], bytes(info["data"]))
            for name, info in safetensors.deserialize(Path(path).read_bytes())}


def test_embed_safetensors_made_by_python(run, owners, tmp_path):
    alice, alice_did = owners["ids"]["alice"]
    bob, _ = owners["ids"]["bob"]
    src, out = tmp_path / "model.safetensors", tmp_path / "marked.safetensors"
    meta = python_checkpoint(src, np.random.default_rng(1))
    before = src.read_bytes()

    report = json.loads(run("--json", "embed", src, "-o", out, "--id", alice, *STRONG).stdout)
    assert report["did"] == alice_did and report["format"] == "safetensors"
    marked = {t["name"] for t in report["tensors"] if t["marked"]}
    assert marked == {"encoder.layer.0.attention.query.weight", "encoder.layer.0.output.dense.weight",
                      "decoder.proj.weight"}
    assert all(0.015 < t["relative_change"] < 0.03 for t in report["tensors"] if t["marked"])
    assert src.read_bytes() == before

    # The output loads in the safetensors library, metadata and all.
    with safetensors.safe_open(str(out), framework="numpy") as f:
        assert f.metadata() == meta
        q = f.get_tensor("encoder.layer.0.attention.query.weight")
    with safetensors.safe_open(str(src), framework="numpy") as f:
        q0 = f.get_tensor("encoder.layer.0.attention.query.weight")
    assert q.dtype == np.float32 and q.shape == q0.shape
    assert 0.015 < np.linalg.norm(q - q0) / np.linalg.norm(q0) < 0.03
    a, b = raw_tensors(src), raw_tensors(out)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name][:2] == b[name][:2], name
        assert (a[name][2] == b[name][2]) == (name not in marked), name

    v = json.loads(run("--json", "verify", out, "--id", alice).stdout)
    assert v["path"] == str(out) and v["format"] == "safetensors"
    (verdict,) = v["verdicts"]
    for key in ("did", "detected", "z", "p_value", "bit_errors", "bits", "elements", "tensors"):
        assert key in verdict
    assert verdict["did"] == alice_did and verdict["detected"] and verdict["z"] > 10
    assert verdict["p_value"] < 1e-9 and verdict["tensors"] == 3
    assert run("verify", src, "--id", alice, check=False).returncode == 1
    assert run("verify", out, "--id", bob, check=False).returncode == 1
    text = run("verify", out, "--id", alice).stdout
    assert "DETECTED" in text and alice_did in text


def test_embed_table_and_refusals(run, owners, tmp_path):
    alice, _ = owners["ids"]["alice"]
    src = tmp_path / "model.safetensors"
    python_checkpoint(src, np.random.default_rng(2))
    out = tmp_path / "out.safetensors"
    table = run("embed", src, "-o", out, "--id", alice, *STRONG).stdout
    assert "encoder.layer.0.attention.query.weight" in table and "skipped" in table
    assert "total: 3 of 6 tensors marked" in table

    p = run("embed", src, "-o", src, "--id", alice, "--force", check=False)
    assert p.returncode == 2 and "is the input" in p.stderr
    before = out.read_bytes()
    p = run("embed", src, "-o", out, "--id", alice, check=False)
    assert p.returncode == 2 and "already exists" in p.stderr and out.read_bytes() == before
    run("embed", src, "-o", out, "--id", alice, "--force", "--strength", "0.03")
    assert out.read_bytes() != before
    p = run("embed", src, "-o", tmp_path / "x.safetensors", check=False)
    assert p.returncode == 2 and "--id" in p.stderr
    p = run("--json", "embed", src, "-o", tmp_path / "y.safetensors", "--id", alice, "--tensors", "^nothing$",
            check=False)
    assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "invalid_argument"
    assert not (tmp_path / "y.safetensors").exists()
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors", "out.safetensors"]


def test_verify_with_registry_exit_codes(run, owners, tmp_path):
    alice, alice_did = owners["ids"]["alice"]
    _, bob_did = owners["ids"]["bob"]
    reg = owners["registry"]
    src, out = tmp_path / "m.safetensors", tmp_path / "a.safetensors"
    python_checkpoint(src, np.random.default_rng(3))
    run("embed", src, "-o", out, "--id", alice, *STRONG)
    res = json.loads(run("--json", "verify", out, "--registry", reg).stdout)
    assert res["detected"] == [alice_did]
    assert len(res["verdicts"]) == 3 and [v["detected"] for v in res["verdicts"]].count(True) == 1
    assert run("verify", out, "--registry", reg, "--did", bob_did, check=False).returncode == 1
    assert run("verify", out, "--registry", reg, "--did", alice_did).returncode == 0
    assert run("verify", src, "--registry", reg, check=False).returncode == 1
    p = run("--json", "verify", out, "--registry", reg, "--did", "did:web:nobody.example", check=False)
    assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "not_found"
    p = run("verify", out, check=False)
    assert p.returncode == 2 and "--id" in p.stderr


def test_sharded_checkpoint(run, owners, tmp_path):
    alice, alice_did = owners["ids"]["alice"]
    src, out = tmp_path / "src", tmp_path / "out"
    made = json.loads(run("--json", "synth", "checkpoint", "-o", src, "--params", "600000", "--shards", "3",
                          "--dtype", "bf16").stdout)
    assert len(made["files"]) == 4 and made["params"] >= 600000
    index = json.loads((src / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    rep = json.loads(run("--json", "embed", src, "-o", out, "--id", alice, *STRONG).stdout)
    assert rep["format"] == "safetensors-sharded"
    assert sorted(os.listdir(out)) == sorted(shards + ["model.safetensors.index.json"])
    assert (out / "model.safetensors.index.json").read_bytes() == (src / "model.safetensors.index.json").read_bytes()
    for s in shards:  # each shard loads in the safetensors library, with the same tensors
        a, b = raw_tensors(src / s), raw_tensors(out / s)
        assert {k: v[:2] for k, v in a.items()} == {k: v[:2] for k, v in b.items()}
    for target in (out, out / "model.safetensors.index.json"):
        v = json.loads(run("--json", "verify", target, "--id", alice).stdout)
        assert v["verdicts"][0]["detected"] and v["detected"] == [alice_did]
    assert run("verify", src, "--id", alice, check=False).returncode == 1
    p = run("embed", src, "-o", src, "--id", alice, "--force", check=False)
    assert p.returncode == 2 and "is the input" in p.stderr


def test_scan_folder_jsonl(run, owners, tmp_path):
    ids, reg = owners["ids"], owners["registry"]
    folder = tmp_path / "uploads"
    (folder / "nested").mkdir(parents=True)
    src = tmp_path / "base.safetensors"
    python_checkpoint(src, np.random.default_rng(4))
    run("embed", src, "-o", folder / "alice.safetensors", "--id", ids["alice"][0], *STRONG)
    run("embed", src, "-o", folder / "nested" / "bob.safetensors", "--id", ids["bob"][0], *STRONG)
    (folder / "plain.safetensors").write_bytes(src.read_bytes())
    (folder / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"x\": 1}")
    (folder / "README.md").write_text("not a checkpoint")
    run("synth", "checkpoint", "-o", folder / "sharded", "--params", "300000", "--shards", "2")

    p = run("scan", folder, "--registry", reg, "--jobs", "2", *STRONG, check=False)
    assert p.returncode == 2  # the corrupt file failed; the scan went on
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    by_name = {Path(x["path"]).name: x for x in lines}
    assert [x["path"] for x in lines] == sorted(x["path"] for x in lines)
    assert set(by_name) == {"alice.safetensors", "bob.safetensors", "plain.safetensors", "corrupt.safetensors",
                            "model.safetensors.index.json"}
    assert by_name["alice.safetensors"]["detected"] == [ids["alice"][1]]
    assert by_name["bob.safetensors"]["detected"] == [ids["bob"][1]]
    assert by_name["plain.safetensors"]["detected"] == []
    assert by_name["model.safetensors.index.json"]["detected"] == []
    for x in lines:
        if "error" not in x:
            assert len(x["verdicts"]) == 3 and {"did", "z", "detected"} <= set(x["verdicts"][0])
    err = by_name["corrupt.safetensors"]["error"]
    assert err["code"] == "corrupt_input" and "corrupt.safetensors" in err["message"]
    assert "1 failed" in p.stderr

    p = run("scan", folder / "alice.safetensors", folder / "plain.safetensors", "--registry", reg, *STRONG)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 2
    p = run("scan", folder / "plain.safetensors", "--registry", reg, *STRONG, check=False)
    assert p.returncode == 1
    p = run("scan", tmp_path / "missing.safetensors", "--registry", reg, check=False)
    assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "not_found"


def test_malformed_corpus_is_refused_by_name(run, owners):
    alice, _ = owners["ids"]["alice"]
    bad = sorted(p for p in DATA.glob("*.safetensors") if not p.name.startswith("valid_"))
    assert len(bad) >= 15
    for f in bad:
        p = run("--json", "verify", f, "--id", alice, check=False)
        assert p.returncode == 2, f
        err = json.loads(p.stdout)["error"]
        assert err["code"] in ("corrupt_input", "unsupported"), (f, err)
        assert f.name in err["message"], err


def test_npy_tensor(run, owners, tmp_path):
    alice, _ = owners["ids"]["alice"]
    a = (np.random.default_rng(5).standard_normal((600, 600)) * 0.02).astype(np.float32)
    np.save(tmp_path / "w.npy", a)
    run("embed", tmp_path / "w.npy", "-o", tmp_path / "m.npy", "--id", alice, "--format", "npy-tensor", *STRONG)
    m = np.load(tmp_path / "m.npy")
    assert m.shape == a.shape and m.dtype == a.dtype
    assert 0.015 < np.linalg.norm(m - a) / np.linalg.norm(a) < 0.03
    assert run("verify", tmp_path / "m.npy", "--id", alice, "--format", "npy-tensor").returncode == 0
    assert run("verify", tmp_path / "w.npy", "--id", alice, "--format", "npy-tensor", check=False).returncode == 1


def torch_enabled(run):
    return "needs a build" not in run("formats").stdout


def test_torch_state_dict_as_python_writes_it(run, owners, tmp_path):
    if not torch_enabled(run):
        pytest.skip("built without LibTorch")
    alice, alice_did = owners["ids"]["alice"]
    rng = np.random.default_rng(6)
    storages = []
    T = torch_files.tensor
    emb = T((rng.standard_normal((512, 256)) * 0.02).astype(np.float32), storages=storages)
    sd = __import__("collections").OrderedDict()
    sd["model.embed_tokens.weight"] = emb
    sd["model.layers.0.mlp.up_proj.weight"] = T((rng.standard_normal((512, 256)) * 0.02).astype(np.float16),
                                               storages=storages)
    sd["model.layers.0.mlp.down_proj.weight"] = T(bf16_bits(rng.standard_normal((256, 512)) * 0.02),
                                                 kind="BFloat16Storage", storages=storages)
    sd["model.norm.weight"] = T(np.ones(256, np.float32), storages=storages)
    sd["model.position_ids"] = T(np.arange(64, dtype=np.int64), storages=storages)
    sd["lm_head.weight"] = emb  # tied to the embedding: the same storage
    sd._metadata = __import__("collections").OrderedDict({"": {"version": 1}, "model": {"version": 1}})
    src, out = tmp_path / "pytorch_model.bin", tmp_path / "marked.bin"
    torch_files.write_torch_save(src, sd)

    rep = json.loads(run("--json", "embed", src, "-o", out, "--id", alice, *STRONG).stdout)
    assert rep["format"] == "pt" and rep["tensors_marked"] == 3
    assert [w["name"] for w in rep["withheld"]] == ["lm_head.weight"]
    assert "shares memory" in rep["withheld"][0]["reason"]
    v = json.loads(run("--json", "verify", out, "--id", alice).stdout)
    assert v["detected"] == [alice_did] and v["verdicts"][0]["tensors"] == 3
    assert run("verify", src, "--id", alice, check=False).returncode == 1

    back = torch_files.read_torch_save(out)
    orig = torch_files.read_torch_save(src)
    assert list(back) == list(sd)
    for name in ("model.norm.weight", "model.position_ids"):
        assert back[name].dtype == orig[name].dtype and np.array_equal(back[name], orig[name]), name
    for name in ("model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"):
        d = back[name].astype(np.float64) - orig[name].astype(np.float64)
        assert 0.01 < np.linalg.norm(d) / np.linalg.norm(orig[name].astype(np.float64)) < 0.03, name
    assert back["model.layers.0.mlp.down_proj.weight"].dtype == np.uint16
    # Tied weights stay tied: one storage in the output, holding the marked values.
    assert np.array_equal(back["lm_head.weight"], back["model.embed_tokens.weight"])
    import zipfile
    assert len([n for n in zipfile.ZipFile(out).namelist() if "/data/" in n]) == 5


def test_torch_missing_or_corrupt(run, owners, tmp_path):
    alice, _ = owners["ids"]["alice"]
    (tmp_path / "x.pt").write_bytes(b"not a zip at all")
    p = run("--json", "verify", tmp_path / "x.pt", "--id", alice, check=False)
    assert p.returncode == 2
    err = json.loads(p.stdout)["error"]
    assert err["code"] in ("corrupt_input", "unsupported") and "x.pt" in err["message"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def test_kill_9_during_embed_leaves_no_output(cli, run, owners, tmp_path):
    alice, _ = owners["ids"]["alice"]
    src, out = tmp_path / "big.safetensors", tmp_path / "out.safetensors"
    run("synth", "checkpoint", "-o", src, "--params", "60000000")
    digest = sha256(src)
    child = subprocess.Popen([cli, "embed", src, "-o", out, "--id", alice], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    def writing():
        # The output is an unnamed O_TMPFILE (or, on filesystems without it, a hidden
        # temporary): look for an open file of the child's in tmp_path other than the input.
        try:
            fds = os.listdir(f"/proc/{child.pid}/fd")
        except OSError:
            return False
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{child.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(tmp_path)) and not target.endswith("big.safetensors"):
                return True
        return False

    deadline = time.time() + 30
    while not writing():
        assert child.poll() is None, "embed finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.002)
    time.sleep(0.05)  # well into the work
    assert child.poll() is None, "embed finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not out.exists()
    assert sha256(src) == digest
    # Nothing remains with O_TMPFILE; on filesystems without it, only the hidden temporary of
    # the killed writer. A new embed is unaffected.
    leftovers = [n for n in os.listdir(tmp_path) if n not in ("big.safetensors",)]
    assert all(n.startswith(".out.safetensors.didmark-tmp-") for n in leftovers), leftovers
    run("embed", src, "-o", out, "--id", alice)
    assert out.exists()
