"""The Python module `didmark` (python/): in-memory embed/verify on numpy arrays, files, identities,
KNN-Shapley against a brute-force Shapley enumeration, exact splits, errors; results checked
against the CLI on the same inputs. Skipped when the module is not built (DIDMARK_PYTHON)."""
import itertools
import json
import math
import threading
from fractions import Fraction

import numpy as np
import pytest

didmark = pytest.importorskip("didmark", reason="the didmark Python module is not built (DIDMARK_PYTHON)")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

# Fields of a CLI verdict (apps/didmark/formats.hpp) that are not timings.
VERDICT_FIELDS = ["did", "detected", "z", "p_value", "log10_p", "bit_errors", "bits", "elements", "tensors", "scheme"]


@pytest.fixture(scope="module")
def alice():
    return didmark.Identity.new()


def weights(rng, dtype=np.float32):
    """About 4.2M elements: default strength 0.005 gives z ~ 10, well past p <= 1e-9 (z 6.44)."""
    return {
        "model.layers.0.mlp.up_proj.weight": (rng.standard_normal((2048, 2048)) * 0.02).astype(dtype),
        "model.layers.0.self_attn.o_proj.weight": (rng.standard_normal((128, 512)) * 0.02).astype(dtype),
        "model.layers.0.input_layernorm.weight": np.ones(2048, dtype),
        "model.position_ids": np.arange(64, dtype=np.int64),
    }


# ---- weights in memory ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_round_trip_detects_and_leaves_original(alice, dtype):
    w = weights(np.random.default_rng(1), dtype)
    before = {k: v.copy() for k, v in w.items()}
    marked, report = didmark.embed(w, alice.watermark_key(), alice.did)

    for k in w:  # the inputs are untouched, the outputs are new arrays of the same kind
        np.testing.assert_array_equal(w[k], before[k])
        assert marked[k] is not w[k] and marked[k].dtype == w[k].dtype and marked[k].shape == w[k].shape
    np.testing.assert_array_equal(marked["model.position_ids"], w["model.position_ids"])
    np.testing.assert_array_equal(marked["model.layers.0.input_layernorm.weight"],
                                  w["model.layers.0.input_layernorm.weight"])
    assert report["did"] == alice.did and report["tensors_marked"] == 2 and report["within_budget"]
    assert report["elements_marked"] == 2048 * 2048 + 128 * 512
    assert {t["name"]: t["marked"] for t in report["tensors"]} == {
        "model.layers.0.mlp.up_proj.weight": True, "model.layers.0.self_attn.o_proj.weight": True,
        "model.layers.0.input_layernorm.weight": False, "model.position_ids": False}
    assert 0.004 < report["relative_change"] < 0.006

    v = didmark.verify(marked, alice.watermark_key(), alice.did)
    assert v["detected"] and v["p_value"] <= 1e-9 and v["z"] > 8
    assert v["did"] == alice.did and v["bits"] == 256 and v["tensors"] == 2
    assert v["elements"] == report["elements_marked"]
    assert v["p_value"] == pytest.approx(math.exp(-v["z"] ** 2 / 2), rel=1e-9)

    stranger = didmark.Identity.new()
    assert not didmark.verify(marked, stranger.watermark_key(), alice.did)["detected"]  # wrong key
    assert not didmark.verify(marked, alice, stranger.did)["detected"]                  # wrong payload
    assert not didmark.verify(w, alice)["detected"]                                     # the original


def test_key_and_owner_forms_agree(alice):
    marked, _ = didmark.embed(weights(np.random.default_rng(2)), alice)  # Identity: its key and DID
    by_bytes = didmark.verify(marked, alice.watermark_key(), alice.did)
    by_hex = didmark.verify(marked, alice.watermark_key().hex(), alice.did)
    by_identity = didmark.verify(marked, alice)
    by_bits = didmark.verify(marked, alice.watermark_key(), didmark.codeword(alice.did))
    assert by_bytes["z"] == by_hex["z"] == by_identity["z"] == by_bits["z"]
    assert by_bits["did"] is None and by_bits["detected"]


def test_in_place_writes_the_callers_arrays(alice):
    w = weights(np.random.default_rng(3))
    copy = {k: v.copy() for k, v in w.items()}
    out, _ = didmark.embed(w, alice, in_place=True)
    assert all(out[k] is w[k] for k in w)
    fresh, _ = didmark.embed(copy, alice)
    for k in w:
        np.testing.assert_array_equal(w[k], fresh[k])  # same bits as the out-of-place embed


def test_verify_reads_without_copying(alice):
    """Read-only arrays (e.g. numpy views of a memory map) verify as they are."""
    marked, _ = didmark.embed(weights(np.random.default_rng(4)), alice)
    for a in marked.values():
        a.flags.writeable = False
    assert didmark.verify(marked, alice)["detected"]


def test_threads_share_a_backend(alice):
    marked, _ = didmark.embed(weights(np.random.default_rng(5)), alice)
    expected = didmark.verify(marked, alice)["z"]
    got = []

    def work():
        got.append(didmark.verify(marked, alice)["z"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [expected] * 4


def test_devices(alice):
    marked, _ = didmark.embed(weights(np.random.default_rng(6)), alice, device="cpu")
    cpu = didmark.verify(marked, alice, device="cpu")
    assert "cpu" in didmark.backend_description("cpu")
    if didmark.cuda_available():
        gpu_marked, _ = didmark.embed(weights(np.random.default_rng(6)), alice, device="cuda")
        for k in marked:  # one formula, two launchers: bit-identical marks
            np.testing.assert_array_equal(marked[k], gpu_marked[k])
        assert didmark.verify(marked, alice, device="cuda")["z"] == pytest.approx(cpu["z"], rel=1e-9)
    elif not didmark.cuda_compiled():
        with pytest.raises(didmark.Error, match="DIDMARK_CUDA=ON") as e:
            didmark.verify(marked, alice, device="cuda")
        assert e.value.code == "unsupported"


# ---- errors ---------------------------------------------------------------------------------


def test_error_class():
    assert issubclass(didmark.Error, RuntimeError)
    with pytest.raises(didmark.Error) as e:
        didmark.parse_did("not-a-did")
    assert e.value.code == "invalid_argument" and "did:" in str(e.value)
    assert e.value.where  # the C++ throw site


@pytest.mark.parametrize("bad, message", [
    (np.zeros((64, 64), np.complex64), "numpy dtype complex64"),
    (np.zeros((64, 64), np.uint32), "numpy dtype uint32"),
    (np.zeros((0, 4096), np.float32), "no tensor can carry a mark"),
    (np.zeros((4096, 64), np.float32).T, "not C-contiguous"),
    (np.zeros((64, 64), ">f4"), "native byte order"),
])
def test_bad_arrays(alice, bad, message):
    for call in (lambda: didmark.embed({"w": bad}, alice), lambda: didmark.verify({"w": bad}, alice)):
        with pytest.raises(didmark.Error, match=message) as e:
            call()
        assert e.value.code == "invalid_argument"
        if "dtype" in message or "contiguous" in message:
            assert "tensor 'w'" in str(e.value)


@pytest.mark.parametrize("key, message", [
    (b"\x01" * 31, "expected 32 bytes, got 31"),
    ("ab" * 31, "expected 64 hex digits"),
    ("zz" * 32, "non-hex"),
    (12345, "key must be 32 bytes, 64 hex digits or an Identity"),
])
def test_bad_keys(alice, key, message):
    w = weights(np.random.default_rng(7))
    with pytest.raises(didmark.Error, match=message) as e:
        didmark.verify(w, key, alice.did)
    assert e.value.code == "invalid_argument"


def test_other_errors(alice, tmp_path):
    w = weights(np.random.default_rng(8))
    with pytest.raises(didmark.Error, match="say whose mark"):
        didmark.verify(w, alice.watermark_key())
    with pytest.raises(didmark.Error, match="payload bit 1 is 2"):
        didmark.verify(w, alice.watermark_key(), [0, 2, 1])
    with pytest.raises(didmark.Error, match="0/1 integers"):
        didmark.verify(w, alice.watermark_key(), [0.5, 1.0])
    with pytest.raises(didmark.Error, match="device 'gpu'"):
        didmark.verify(w, alice, device="gpu")
    with pytest.raises(didmark.Error, match="strength") as e:
        didmark.embed(w, alice, strength=0.02, max_change=0.01)
    with pytest.raises(didmark.Error) as e:
        didmark.Identity.load(tmp_path / "missing.id.json")
    assert e.value.code == "not_found"
    with pytest.raises(didmark.Error, match="exactly one of"):
        didmark.verify_file(tmp_path / "x.safetensors")


# ---- identities -----------------------------------------------------------------------------


def test_identity_file_round_trip(run, tmp_path):
    ident = didmark.Identity.new()
    f = tmp_path / "me.id.json"
    ident.save(f)
    assert (f.stat().st_mode & 0o777) == 0o600
    again = didmark.Identity.load(str(f))
    assert again.did == ident.did and again.watermark_key() == ident.watermark_key()
    assert ident.did.startswith("did:key:z6Mk") and len(ident.watermark_key()) == 32
    # The CLI derives the same key from the file; repr shows neither secret nor key.
    exported = json.loads(run("--json", "id", "export-key", f).stdout)
    assert exported == {"did": ident.did, "key": ident.watermark_key().hex()} == json.loads(ident.registry_line())
    assert ident.watermark_key().hex() not in repr(ident) and repr(ident) == f"<didmark.Identity {ident.did}>"
    with pytest.raises(didmark.Error, match="exists"):
        ident.save(f)


def test_seed_identity_and_did():
    zero = didmark.Identity.from_seed(bytes(32))
    assert zero.did == "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"  # known answer (DESIGN.md)
    info = didmark.parse_did(zero.did)
    assert info["method"] == "key" and info["public_key"] == zero.public_key
    assert didmark.parse_did("did:web:example.com")["public_key"] is None
    cw = didmark.codeword(zero.did)
    assert cw.dtype == np.uint8 and cw.shape == (256,) and set(np.unique(cw)) <= {0, 1}
    assert np.packbits(cw[:64], bitorder="little").tobytes().hex() == info["codeword_fingerprint"]
    sig = zero.sign(b"hello")
    assert didmark.verify_signature(zero.did, b"hello", sig)
    assert not didmark.verify_signature(zero.did, b"hullo", sig)


# ---- files, against the CLI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def owners_on_disk(tmp_path_factory):
    d = tmp_path_factory.mktemp("owners")
    out = {}
    for name in ("alice", "bob"):
        ident = didmark.Identity.new()
        ident.save(d / f"{name}.id.json")
        out[name] = (ident, d / f"{name}.id.json")
    registry = d / "registry.jsonl"
    registry.write_text("".join(ident.registry_line() + "\n" for ident, _ in out.values()))
    out["registry"] = registry
    return out


def test_files_match_the_cli(run, owners_on_disk, tmp_path):
    alice, alice_file = owners_on_disk["alice"]
    bob, _ = owners_on_disk["bob"]
    registry = owners_on_disk["registry"]
    src = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(weights(np.random.default_rng(9)), str(src), metadata={"format": "pt"})
    before = src.read_bytes()

    py_out, cli_out = tmp_path / "py.safetensors", tmp_path / "cli.safetensors"
    report = didmark.embed_file(src, py_out, alice_file)
    cli_report = json.loads(run("--json", "embed", src, "-o", cli_out, "--id", alice_file).stdout)
    assert src.read_bytes() == before
    assert py_out.read_bytes() == cli_out.read_bytes()  # the same engine call, byte for byte
    for field in ("did", "format", "scheme", "strength", "tensors", "withheld", "tensors_marked",
                  "elements_marked", "relative_change", "max_tensor_change", "within_budget", "expected_z", "bytes"):
        assert report[field] == cli_report[field], field
    with pytest.raises(didmark.Error, match="already exists"):
        didmark.embed_file(src, py_out, alice)
    didmark.embed_file(src, py_out, alice, force=True)  # an Identity works as well as its file

    # verify_file with one owner, then a registry: the CLI's JSON, field for field.
    for py_kwargs, cli_args in [({"identity": alice_file}, ["--id", alice_file]),
                                ({"registry": registry}, ["--registry", registry]),
                                ({"registry": registry, "did": bob.did}, ["--registry", registry, "--did", bob.did]),
                                ({"key": alice.watermark_key(), "did": alice.did}, ["--id", alice_file])]:
        got = didmark.verify_file(py_out, **py_kwargs)
        p = run("--json", "verify", py_out, *cli_args, check=False)
        assert p.returncode in (0, 1), p.stderr
        want = json.loads(p.stdout)
        assert got["detected"] == want["detected"] and got["path"] == want["path"]
        assert [{f: v[f] for f in VERDICT_FIELDS} for v in got["verdicts"]] == \
               [{f: v[f] for f in VERDICT_FIELDS} for v in want["verdicts"]]
    assert didmark.verify_file(py_out, alice)["detected"] == [alice.did]
    assert didmark.verify_file(py_out, registry=registry)["detected"] == [alice.did]
    assert didmark.load_registry(registry) == {alice.did: alice.watermark_key(), bob.did: bob.watermark_key()}

    # The same bytes in memory (zero-copy views of safetensors' arrays) give the same verdict.
    in_memory = didmark.verify(safetensors_numpy.load_file(str(py_out)), alice)
    want = didmark.verify_file(py_out, alice)["verdicts"][0]
    assert {f: in_memory[f] for f in VERDICT_FIELDS} == {f: want[f] for f in VERDICT_FIELDS}


def test_sharded_and_torch_files(run, owners_on_disk, tmp_path):
    alice, alice_file = owners_on_disk["alice"]
    # A sharded checkpoint given as its folder: the output folder gets the same index and shards.
    run("synth", "checkpoint", "-o", tmp_path / "sharded", "--params", 3_000_000, "--shards", 2, "--hidden", 256)
    r = didmark.embed_file(tmp_path / "sharded", tmp_path / "sharded-out", alice)
    assert r["format"] == "safetensors-sharded" and len(r["outputs"]) == 3
    got = didmark.verify_file(tmp_path / "sharded-out", alice)
    want = json.loads(run("--json", "verify", tmp_path / "sharded-out", "--id", alice_file).stdout)
    assert got["detected"] == want["detected"] == [alice.did]
    assert {f: got["verdicts"][0][f] for f in VERDICT_FIELDS} == {f: want["verdicts"][0][f] for f in VERDICT_FIELDS}

    # A torch.save state dict: in Python through the process's torch (torch.load/torch.save),
    # else through the LibTorch plugin when this build has it.
    import torch_files
    sd = {"model.layers.0.mlp.up_proj.weight":
          torch_files.tensor((np.random.default_rng(10).standard_normal((512, 512)) * 0.02).astype(np.float32))}
    src = tmp_path / "pytorch_model.bin"
    torch_files.write_torch_save(src, sd)
    try:
        r = didmark.embed_file(src, tmp_path / "py.bin", alice, strength=0.02)
    except didmark.Error as e:
        assert e.code == "unsupported" and "LibTorch" in str(e)
        pytest.skip("built without LibTorch")
    run("embed", src, "-o", tmp_path / "cli.bin", "--id", alice_file, "--strength", 0.02)
    assert r["format"] == "pt" and r["tensors_marked"] == 1
    # The same tensors, whichever writer wrote the container.
    py_sd, cli_sd = torch_files.read_torch_save(tmp_path / "py.bin"), torch_files.read_torch_save(tmp_path / "cli.bin")
    assert list(py_sd) == list(cli_sd) == list(sd)
    assert all(np.array_equal(py_sd[k], cli_sd[k]) and py_sd[k].dtype == cli_sd[k].dtype for k in sd)
    assert didmark.verify_file(tmp_path / "py.bin", alice)["detected"] == [alice.did]


def test_file_errors(owners_on_disk, tmp_path):
    alice, _ = owners_on_disk["alice"]
    with pytest.raises(didmark.Error) as e:
        didmark.verify_file(tmp_path / "missing.safetensors", alice)
    assert e.value.code == "not_found" and "missing.safetensors" in str(e.value)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(didmark.Error) as e:
        didmark.verify_file(bad, alice)
    assert e.value.code == "corrupt_input" and "bad.safetensors" in str(e.value)
    weird = tmp_path / "model.weird"
    weird.write_bytes(b"neither a known header nor a known name")
    with pytest.raises(didmark.Error, match="format"):
        didmark.verify_file(weird, alice)


# ---- KNN-Shapley against a brute-force enumeration ---------------------------------------


def knn_utility(order, subset, labels, y, k):
    """U(S) of docs/attribution.md: (1/K) * #{of the min(K, |S|) nearest rows of S, label == y}."""
    nearest = [i for i in order if i in subset][:k]
    return Fraction(sum(labels[i] == y for i in nearest), k)


def brute_force_shapley(x, labels, q, q_labels, k):
    n = len(x)
    values = [Fraction(0)] * n
    for query, y in zip(q, q_labels):
        d = ((x - query) ** 2).sum(axis=1)
        order = sorted(range(n), key=lambda i: (d[i], i))  # ties to the smaller row index
        for i in range(n):
            others = [j for j in range(n) if j != i]
            for size in range(n):
                weight = Fraction(math.factorial(size) * math.factorial(n - size - 1), math.factorial(n))
                for s in itertools.combinations(others, size):
                    s = set(s)
                    values[i] += weight * (knn_utility(order, s | {i}, labels, y, k) -
                                           knn_utility(order, s, labels, y, k))
    return [v / len(q) for v in values]


@pytest.mark.parametrize("n, k, seed", [(7, 3, 0), (8, 2, 1), (5, 7, 2), (6, 1, 3)])
def test_knn_shapley_is_exact(n, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    labels = rng.integers(0, 3, n)
    q = rng.standard_normal((4, 3))
    q_labels = rng.integers(0, 3, 4)
    owners = rng.integers(10, 13, n)
    values, totals = didmark.knn_shapley(x, labels, q, q_labels, k=k, contributors=owners)
    expected = brute_force_shapley(x, labels, q, q_labels, k)
    assert values.dtype == np.float64 and values.shape == (n,)
    np.testing.assert_allclose(values, [float(v) for v in expected], rtol=0, atol=1e-12)
    assert totals == pytest.approx({int(c): float(sum(expected[i] for i in range(n) if owners[i] == c))
                                    for c in np.unique(owners)}, abs=1e-12)
    _, no_owners = didmark.knn_shapley(x.astype(np.float32), labels.astype(np.int32), q.astype(np.float32),
                                       q_labels, k=k)
    assert no_owners == {}


def test_knn_shapley_errors():
    x = np.zeros((5, 3))
    with pytest.raises(didmark.Error) as e:
        didmark.knn_shapley(x, np.zeros(4, np.int64), x, np.zeros(5, np.int64))
    assert e.value.code == "invalid_argument" and "label" in str(e.value)
    with pytest.raises(didmark.Error, match="[Kk]"):
        didmark.knn_shapley(x, np.zeros(5, np.int64), x, np.zeros(5, np.int64), k=0)


# ---- royalty splits ------------------------------------------------------------------------


def reference_split(revenue, weights):
    """Floors, then the largest remainders, ties to the smaller DID (negative weights clip)."""
    ws = {d: max(Fraction(w), Fraction(0)) for d, w in weights.items()}
    total = sum(ws.values())
    exact = {d: Fraction(revenue) * w / total for d, w in ws.items()}
    out = {d: int(v) for d, v in exact.items()}
    for d in sorted(ws, key=lambda d: (-(exact[d] - out[d]), d))[:revenue - sum(out.values())]:
        out[d] += 1
    return out


@pytest.mark.parametrize("seed", range(4))
def test_split_is_exact_and_matches_the_cli(run, tmp_path, seed):
    rng = np.random.default_rng(seed)
    weights = {f"did:web:p{i}.example": float(rng.random() * 10.0 ** rng.integers(-5, 5)) for i in range(12)}
    weights["did:web:negative.example"] = -1.5
    weights["did:web:decimal.example"] = "12.345678901234567890123"  # exact decimal string
    for revenue in (0, 7, 10**6 + 3, 2**64 + 1, 2**128 - 1):
        got = didmark.split(revenue, weights)
        assert all(type(a) is int for a in got.values())
        assert sum(got.values()) == revenue and list(got) == sorted(weights)
        assert got == reference_split(revenue, weights)
        f = tmp_path / "w.json"
        f.write_text(json.dumps(weights))
        cli = json.loads(run("--json", "split", "--revenue", revenue, "--weights", f).stdout)
        assert {d: str(a) for d, a in got.items()} == cli["payouts"]


def test_split_options_and_errors():
    assert didmark.split(5, {"did:web:a.example": 70, "did:web:b.example": 30}) == \
        {"did:web:a.example": 4, "did:web:b.example": 1}
    big = 2**100 + 1  # an int weight beyond 2^53 is taken exactly
    assert didmark.split(2 * big + 1, {"did:web:a.example": big, "did:web:b.example": big}) == \
        {"did:web:a.example": big + 1, "did:web:b.example": big}
    assert didmark.split(9, {"did:web:a.example": 0}, fallback="did:web:f.example") == \
        {"did:web:a.example": 0, "did:web:f.example": 9}
    with pytest.raises(didmark.Error, match="refuse|negative"):
        didmark.split(9, {"did:web:a.example": -1, "did:web:b.example": 1}, negative="refuse")
    with pytest.raises(didmark.Error, match="revenue"):
        didmark.split(-1, {"did:web:a.example": 1})
    with pytest.raises(didmark.Error, match="revenue"):
        didmark.split(2**128, {"did:web:a.example": 1})
    with pytest.raises(didmark.Error, match="bool"):
        didmark.split(1, {"did:web:a.example": True})
    with pytest.raises(didmark.Error) as e:
        didmark.split(1, {"not a did": 1})
    assert e.value.code == "invalid_argument"


def test_weak_marks_are_refused_in_memory_too(alice):
    rng = np.random.default_rng(11)
    small = {"model.layers.0.mlp.up_proj.weight": (rng.standard_normal((256, 256)) * 0.02).astype(np.float32)}
    with pytest.raises(didmark.Error, match="allow_weak") as e:
        didmark.embed(small, alice)
    assert e.value.code == "invalid_argument" and "strength=" in str(e.value)
    marked, rep = didmark.embed(small, alice, allow_weak=True)
    assert rep["tensors_marked"] == 1 and not np.array_equal(marked["model.layers.0.mlp.up_proj.weight"],
                                                             small["model.layers.0.mlp.up_proj.weight"])
    # The strength it suggests does prove it.
    strength = float(str(e.value).split("strength=")[1].split()[0])
    marked, _ = didmark.embed(small, alice, strength=strength, max_change=2.5 * strength)
    assert didmark.verify(marked, alice)["detected"]
