"""PyTorch files against real PyTorch: what didmark writes opens with torch.load(path) under its
default weights_only=True, with the input's nesting and non-tensor values; what torch.save writes
(zip and the legacy format, shared storages, views) is read as torch reads it. Runs the CLI
(DIDMARK_CLI, or `didmark` on PATH: the installed package's console script)."""
import collections
import io
import json
import pickletools
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (scripts/setup.sh installs it)")

# Strong enough that a few hundred thousand elements give a clear detection.
STRONG = ["--strength", "0.02"]
ALLOWED_GLOBALS = {"torch._utils _rebuild_tensor_v2", "collections OrderedDict"}


@pytest.fixture(scope="module")
def alice(cli, tmp_path_factory):
    import subprocess

    d = tmp_path_factory.mktemp("ids")
    subprocess.run([cli, "id", "new", "-o", str(d / "alice.id.json")], check=True, capture_output=True)
    return str(d / "alice.id.json")


@pytest.fixture
def torch_cli(run):
    if "needs a build" in run("formats").stdout:
        pytest.skip("built without the LibTorch plugin")
    return run


def globals_of(path):
    """The GLOBAL opcodes of a torch.save file's data.pkl, as 'module name'."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        data = z.read(name)
    out = set()
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name in ("GLOBAL", "STACK_GLOBAL", "INST"):
            out.add(arg)
    return out


def same_structure(a, b, path="root"):
    """Same nesting and non-tensor values; tensors of the same dtype and shape. Returns tensor pairs."""
    pairs = []
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        return [(path, a, b)]
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            pairs += same_structure(a[k], b[k], f"{path}.{k}")
        return pairs
    if isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            pairs += same_structure(x, y, f"{path}[{i}]")
        return pairs
    assert type(a) is type(b) and a == b, (path, a, b)
    return pairs


def rel_change(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / a.norm())


def checkpoint(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.GELU(), torch.nn.Linear(512, 512))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    sd = model.state_dict()
    return {
        "model": sd,
        "optimizer": {"state": {0: {"step": 3, "exp_avg": torch.zeros(4)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1], "amsgrad": False}]},
        "bf16": (torch.randn(256, 512, generator=g) * 0.02).to(torch.bfloat16),
        "half": (torch.randn(512, 256, generator=g) * 0.02).half(),
        "ids": torch.arange(1000),
        "epoch": 7, "name": "run-1", "loss": 0.125, "big": 2 ** 40, "neg": -3, "none": None, "flag": True,
        "nested": [(1, "a"), {"k": [None, 2.5]}],
    }


def test_didmark_output_loads_under_weights_only(torch_cli, alice, tmp_path):
    obj = checkpoint()
    src, out = tmp_path / "ckpt.pt", tmp_path / "marked.pt"
    torch.save(obj, src)
    rep = json.loads(torch_cli("--json", "embed", src, "-o", out, "--id", alice, *STRONG).stdout)
    assert rep["tensors_marked"] == 4  # two weights, bf16, half (biases and small tensors skipped)

    back = torch.load(out)  # PyTorch's default: weights_only=True
    back2 = torch.load(out, weights_only=True)
    orig = torch.load(src)
    for loaded in (back, back2):
        pairs = same_structure(orig, loaded)
        changed = {p for p, a, b in pairs if not torch.equal(a, b)}
        assert changed == {"root.model.0.weight", "root.model.2.weight", "root.bf16", "root.half"}
        for p, a, b in pairs:
            if p in changed:
                assert 0.01 < rel_change(a, b) < 0.03, p
    assert back["bf16"].dtype == torch.bfloat16 and back["half"].dtype == torch.float16
    # Only globals on the weights-only unpickler's allow list (no torch.jit._pickle.*).
    gl = globals_of(out)
    assert gl - ALLOWED_GLOBALS <= {"torch FloatStorage", "torch BFloat16Storage", "torch HalfStorage",
                                    "torch LongStorage"}, gl
    # A well-formed zip: CRCs right, data 64-byte aligned as PyTorch writes it (mmap loads).
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
    mm = torch.load(out, mmap=True)
    assert torch.equal(mm["model"]["0.weight"], back["model"]["0.weight"])
    v = json.loads(torch_cli("--json", "verify", out, "--id", alice).stdout)
    assert len(v["detected"]) == 1


def test_state_dict_round_trip_through_load_state_dict(torch_cli, alice, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.LayerNorm(1024), torch.nn.Linear(1024, 16))
    src, out = tmp_path / "pytorch_model.bin", tmp_path / "marked.bin"
    torch.save(model.state_dict(), src)
    torch_cli("embed", src, "-o", out, "--id", alice, *STRONG)
    sd = torch.load(out)
    assert list(sd) == list(model.state_dict())
    fresh = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.LayerNorm(1024), torch.nn.Linear(1024, 16))
    fresh.load_state_dict(sd)  # strict: every key, every shape
    assert torch.equal(fresh[1].weight, model[1].weight)  # the norm is not marked
    assert 0.01 < rel_change(model[0].weight.detach(), fresh[0].weight.detach()) < 0.03


def test_shared_storages_and_views(torch_cli, alice, tmp_path):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1024, 512, generator=g) * 0.02
    emb = torch.randn(2048, 256, generator=g) * 0.02
    obj = {"base": base, "rows": base[100:600], "emb": emb, "lm_head": emb, "t": (torch.randn(256, 1024, generator=g) * 0.02).t()}
    src, out = tmp_path / "views.pt", tmp_path / "marked.pt"
    torch.save(obj, src)
    rep = json.loads(torch_cli("--json", "embed", src, "-o", out, "--id", alice, *STRONG).stdout)
    withheld = {w["name"]: w["reason"] for w in rep["withheld"]}
    assert set(withheld) == {"rows", "lm_head"} and all("shares memory" in r for r in withheld.values())
    back = torch.load(out)
    # Tied stays tied, a view stays a view of its (marked) base.
    assert back["lm_head"].data_ptr() == back["emb"].data_ptr()
    assert back["rows"].untyped_storage().data_ptr() == back["base"].untyped_storage().data_ptr()
    assert torch.equal(back["rows"], back["base"][100:600])
    assert back["rows"].storage_offset() == 100 * 512
    # A transposed view is read with its own strides (torch's values), marked as its own tensor.
    assert 0.01 < rel_change(obj["t"], back["t"]) < 0.03
    for name in ("base", "emb"):
        assert 0.01 < rel_change(obj[name], back[name]) < 0.03


def test_legacy_format_reads_as_torch_reads_it(torch_cli, alice, tmp_path):
    obj = checkpoint(5)
    z, legacy = tmp_path / "zip.pt", tmp_path / "legacy.pt"
    torch.save(obj, z)
    torch.save(obj, legacy, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(legacy)
    # The same tensors are read from both: the same marked output, bit for bit.
    out_z, out_l = tmp_path / "out_zip.pt", tmp_path / "out_legacy.pt"
    torch_cli("embed", z, "-o", out_z, "--id", alice, *STRONG)
    torch_cli("embed", legacy, "-o", out_l, "--id", alice, *STRONG)
    a, b = torch.load(out_z), torch.load(out_l)
    for p, x, y in same_structure(a, b):
        assert torch.equal(x, y), p
    same_structure(torch.load(legacy), b)
    # Verification reads the legacy file as the zip one: the same statistic.
    vz = json.loads(torch_cli("--json", "verify", out_z, "--id", alice).stdout)["verdicts"][0]
    torch.save(torch.load(out_z), tmp_path / "marked_legacy.pt", _use_new_zipfile_serialization=False)
    vl = json.loads(torch_cli("--json", "verify", tmp_path / "marked_legacy.pt", "--id", alice).stdout)["verdicts"][0]
    assert vz["detected"] and vl["detected"] and vz["z"] == vl["z"] and vz["elements"] == vl["elements"]


def test_legacy_views_and_sharing(torch_cli, alice, tmp_path):
    base = torch.randn(1024, 512) * 0.02
    obj = collections.OrderedDict(w=base, head=base, tail=base[512:])
    src, out = tmp_path / "legacy.pt", tmp_path / "out.pt"
    torch.save(obj, src, _use_new_zipfile_serialization=False)
    rep = json.loads(torch_cli("--json", "embed", src, "-o", out, "--id", alice, *STRONG).stdout)
    assert rep["tensors_marked"] == 1 and {w["name"] for w in rep["withheld"]} == {"head", "tail"}
    back = torch.load(out)
    assert back["head"].data_ptr() == back["w"].data_ptr() and torch.equal(back["tail"], back["w"][512:])


@pytest.mark.parametrize("damage", ["truncate", "count"])
def test_legacy_damage_is_refused(torch_cli, alice, tmp_path, damage):
    src = tmp_path / "legacy.pt"
    torch.save({"w": torch.randn(256, 256)}, src, _use_new_zipfile_serialization=False)
    data = bytearray(src.read_bytes())
    if damage == "truncate":
        data = data[:-100]
    else:  # the element count before the storage's bytes
        at = len(data) - 256 * 256 * 4 - 8
        data[at] ^= 1
    src.write_bytes(bytes(data))
    p = torch_cli("--json", "verify", src, "--id", alice, check=False)
    assert p.returncode == 2
    err = json.loads(p.stdout)["error"]
    assert err["code"] == "corrupt_input" and "legacy.pt" in err["message"]


@pytest.mark.parametrize("attack, dtype", [("noise:0.01", torch.float64), ("cast:bf16", torch.bfloat16)])
def test_attack_outputs_load_under_weights_only(torch_cli, tmp_path, attack, dtype):
    # `didmark attack` writes the container back (noise) or a new state dict (a cast changes
    # dtypes) through the same writer.
    src = tmp_path / "m.pt"
    w = torch.randn(512, 512, dtype=torch.float64) * 0.02
    torch.save({"w": w, "ids": torch.arange(10)}, src)
    out = tmp_path / "attacked.pt"
    torch_cli("attack", src, "-o", out, "--attack", attack)
    back = torch.load(out)
    assert list(back) == ["w", "ids"] and back["w"].dtype == dtype and torch.equal(back["ids"], torch.arange(10))
    assert 0 < rel_change(w, back["w"].double()) < 0.05


def test_module_reads_and_writes_through_torch(tmp_path):
    # Inside Python, .pt files go through the process's own torch (the LibTorch plugin cannot
    # share a process with it): everything the input held comes back, OrderedDict and
    # _metadata included, and the legacy format and views read as torch reads them.
    didmark = pytest.importorskip("didmark", reason="the didmark Python module is not built")
    alice = didmark.Identity.from_seed(b"m" * 32)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.BatchNorm1d(1024))
    sd = model.state_dict()
    for legacy in (False, True):
        src, out = tmp_path / f"in{legacy}.bin", tmp_path / f"out{legacy}.bin"
        torch.save(sd, src, _use_new_zipfile_serialization=not legacy)
        rep = didmark.embed_file(src, out, alice, strength=0.02)
        assert rep["format"] == "pt" and rep["tensors_marked"] == 1
        back = torch.load(out)  # weights_only=True
        assert type(back) is collections.OrderedDict and back._metadata == sd._metadata
        assert list(back) == list(sd) and torch.equal(back["1.num_batches_tracked"], sd["1.num_batches_tracked"])
        assert 0.01 < rel_change(sd["0.weight"], back["0.weight"]) < 0.03
        v = didmark.verify_file(out, key=alice.watermark_key(), did=alice.did)
        assert v["detected"] == [alice.did]
        with pytest.raises(didmark.Error, match="exists"):
            didmark.embed_file(src, out, alice)
    # Objects torch's weights-only unpickler refuses are refused, naming the file.
    torch.save({"w": torch.zeros(3), "obj": __import__("argparse").Namespace(a=1)}, tmp_path / "obj.pt")
    with pytest.raises(didmark.Error, match="obj.pt") as e:
        didmark.verify_file(tmp_path / "obj.pt", key=alice.watermark_key(), did=alice.did)
    assert e.value.code in ("unsupported", "corrupt_input")


def test_module_validates_before_torch_loads(tmp_path):
    # Inside Python too, every PyTorch file passes didmark's own zip reader / legacy parser and
    # strict pickle validator before torch.load sees it, and torch reads the bytes that were
    # checked (not the path again). Files torch itself would accept are refused here.
    didmark = pytest.importorskip("didmark", reason="the didmark Python module is not built")
    alice = didmark.Identity.from_seed(b"v" * 32)
    src = tmp_path / "trailing.pt"
    torch.save({"w": torch.randn(64, 64)}, src)
    src.write_bytes(src.read_bytes() + b"x" * 10)
    torch.load(src)  # torch reads past the junk
    with pytest.raises(didmark.Error, match="trailing.pt.*end-of-directory") as e:
        didmark.verify_file(src, key=alice.watermark_key(), did=alice.did)
    assert e.value.code == "corrupt_input"
    # A legacy file whose storage count disagrees with its object: our parser's words.
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.randn(256, 256)}, legacy, _use_new_zipfile_serialization=False)
    data = bytearray(legacy.read_bytes())
    data[len(data) - 256 * 256 * 4 - 8] ^= 1
    legacy.write_bytes(bytes(data))
    with pytest.raises(didmark.Error, match="legacy.pt.*elements where the object says") as e:
        didmark.verify_file(legacy, key=alice.watermark_key(), did=alice.did)
    assert e.value.code == "corrupt_input"
    # A global outside the weights-only set is refused by the validator, named, never run.
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85q\x01Rq\x02.")
        z.writestr("evil/byteorder", b"little")
        z.writestr("evil/version", b"3\n")
    with pytest.raises(didmark.Error, match="evil.pt") as e:
        didmark.verify_file(evil, key=alice.watermark_key(), did=alice.did)
    assert e.value.code in ("unsupported", "corrupt_input") and "data.pkl" in str(e.value)
