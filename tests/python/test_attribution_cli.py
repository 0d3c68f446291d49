"""`didmark attribute ...` and `didmark synth knn-dataset` end to end, against NumPy references."""
import json

import numpy as np
import pytest


def knn_shapley_reference(x, y, q, yq, k):
    """The exact recursion in NumPy: per query a stable sort by distance (ties by index)."""
    n = len(x)
    values = np.zeros(n)
    for qi in range(len(q)):
        d = ((x.astype(np.float64) - q[qi].astype(np.float64)) ** 2).sum(axis=1)
        order = np.argsort(d, kind="stable")
        match = (y[order] == yq[qi]).astype(np.float64)
        s = np.zeros(n)
        s[n - 1] = match[n - 1] / k * min(k, n) / n
        for i in range(n - 1, 0, -1):  # rank i (1-based) is order[i - 1]
            s[i - 1] = s[i] + (match[i - 1] - match[i]) / k * min(k, i) / i
        values[order] += s
    return values / len(q)


def save(path, arr):
    np.save(path, arr)
    return path


@pytest.fixture
def knn_files(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 4, size=(60, 3)).astype(np.float64)  # integer grid: exact ties
    y = rng.integers(0, 3, size=60)
    q = rng.integers(0, 4, size=(9, 3)).astype(np.float64)
    yq = rng.integers(0, 3, size=9)
    c = (np.arange(60) % 4).astype(np.int32)
    files = {
        "x": save(tmp_path / "x.npy", x),
        "y": save(tmp_path / "y.npy", y),
        "q": save(tmp_path / "q.npy", q),
        "yq": save(tmp_path / "yq.npy", yq),
        "c": save(tmp_path / "c.npy", c),
    }
    return files, (x, y, q, yq, c)


def knn_args(f, *extra):
    return ["attribute", "knn-shapley", "--train", f["x"], "--train-labels", f["y"], "--test", f["q"],
            "--test-labels", f["yq"], *extra]


def test_knn_shapley_matches_numpy_and_sums_contributors(run, knn_files, tmp_path):
    f, (x, y, q, yq, c) = knn_files
    out = tmp_path / "values.npy"
    totals = tmp_path / "totals.json"
    p = run("--json", *knn_args(f, "-k", "3", "--contributors", f["c"], "-o", out, "--totals-out", totals))
    j = json.loads(p.stdout)
    ref = knn_shapley_reference(x, y, q, yq, 3)
    values = np.load(out)
    assert values.shape == (60,)
    np.testing.assert_allclose(values, ref, atol=1e-12)
    assert j["train"] == 60 and j["test"] == 9 and j["k"] == 3 and j["dim"] == 3
    assert set(j["contributors"]) == {"0", "1", "2", "3"}
    for cid in range(4):
        assert j["contributors"][str(cid)] == pytest.approx(ref[c == cid].sum(), abs=1e-12)
        assert j["contributor_rows"][str(cid)] == 15
    assert json.loads(totals.read_text()) == j["contributors"]
    assert j["sum"] == pytest.approx(ref.sum(), abs=1e-12)


def test_knn_shapley_names_contributors_and_prints_a_table(run, knn_files, tmp_path):
    f, _ = knn_files
    names = tmp_path / "names.txt"
    names.write_text("did:web:a.example\ndid:web:b.example\ndid:web:c.example\ndid:web:d.example\n")
    p = run(*knn_args(f, "--contributors", f["c"], "--contributor-names", names))
    assert "did:web:c.example" in p.stdout and "sum of values" in p.stdout
    j = json.loads(run("--json", *knn_args(f, "--contributors", f["c"], "--contributor-names", names)).stdout)
    assert set(j["contributors"]) == {"did:web:a.example", "did:web:b.example", "did:web:c.example",
                                      "did:web:d.example"}
    names.write_text("only-one\n")
    bad = run(*knn_args(f, "--contributors", f["c"], "--contributor-names", names), check=False)
    assert bad.returncode == 2 and "contributor id 1 has no name" in bad.stderr


@pytest.mark.parametrize("change,message", [
    ("k0", "K = 0 must be at least 1"),
    ("dim", "test embeddings have 4 columns but train embeddings have 3"),
    ("labels", "train labels: 59 entries for 60 training rows"),
    ("nan", "train embeddings: row 5 column 2 is nan"),
])
def test_knn_shapley_refuses_malformed_inputs(run, knn_files, tmp_path, change, message):
    f, (x, y, q, yq, c) = knn_files
    args = knn_args(f)
    if change == "k0":
        args += ["-k", "0"]
    elif change == "dim":
        args[args.index("--test") + 1] = save(tmp_path / "q4.npy", np.zeros((9, 4)))
    elif change == "labels":
        args[args.index("--train-labels") + 1] = save(tmp_path / "y59.npy", y[:59])
    elif change == "nan":
        bad = x.copy()
        bad[5, 2] = np.nan
        args[args.index("--train") + 1] = save(tmp_path / "xnan.npy", bad)
    p = run(*args, check=False)
    assert p.returncode == 2
    assert message in p.stderr
    pj = run("--json", *args, check=False)
    assert json.loads(pj.stdout)["error"]["code"] == "invalid_argument"


def test_knn_shapley_refuses_to_overwrite_without_force(run, knn_files, tmp_path):
    f, _ = knn_files
    out = tmp_path / "v.npy"
    run(*knn_args(f, "-o", out))
    p = run(*knn_args(f, "-o", out), check=False)
    assert p.returncode == 2 and "exists" in p.stderr
    run(*knn_args(f, "-o", out, "--force"))


def test_synth_dataset_values_clean_contributors_highest(run, tmp_path):
    reg = tmp_path / "registry.jsonl"
    dids = ["did:web:alice.example", "did:web:bob.example", "did:web:carol.example"]
    reg.write_text("".join(json.dumps({"did": d, "key": "00" * 32}) + "\n" for d in dids))
    d = tmp_path / "ds"
    run("synth", "knn-dataset", "-o", d, "--registry", reg)
    assert (d / "contributors.txt").read_text().split() == dids
    totals = tmp_path / "contributors.json"
    j = json.loads(run("--json", "attribute", "knn-shapley", "--train", d / "train.npy", "--train-labels",
                       d / "train_labels.npy", "--test", d / "test.npy", "--test-labels", d / "test_labels.npy",
                       "--contributors", d / "contributors.npy", "--contributor-names", d / "contributors.txt",
                       "--totals-out", totals).stdout)
    t = j["contributors"]
    # Label noise grows from alice (none) to carol (40%): their values fall in that order.
    assert t[dids[0]] > t[dids[1]] > t[dids[2]]
    assert json.loads(totals.read_text()) == t


def test_project_is_keyed_and_matches_the_published_matrix(run, tmp_path):
    rng = np.random.default_rng(3)
    p_dim, k = 50, 130
    eye = save(tmp_path / "eye.npy", np.eye(p_dim, dtype=np.float32))
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    run("attribute", "project", "--grads", eye, "-k", k, "--seed", 9, "-o", a)
    run("attribute", "project", "--grads", eye, "-k", k, "--seed", 9, "--feature-tile", 7, "-o", b)
    ra, rb = np.load(a), np.load(b)
    assert ra.shape == (p_dim, k)
    assert np.array_equal(ra.view(np.uint32), rb.view(np.uint32))  # bit-identical across tiles
    assert np.all(np.abs(ra) == np.float32(1 / np.sqrt(k)))
    g = rng.standard_normal((7, p_dim)).astype(np.float32)
    gp = tmp_path / "gp.npy"
    j = json.loads(run("--json", "attribute", "project", "--grads", save(tmp_path / "g.npy", g), "-k", k, "--seed", 9,
                       "-o", gp).stdout)
    assert j["rows"] == 7 and j["features"] == p_dim and j["k"] == k
    np.testing.assert_allclose(np.load(gp), g.astype(np.float64) @ ra.astype(np.float64), rtol=1e-5, atol=1e-5)
    other = tmp_path / "other.npy"
    run("attribute", "project", "--grads", eye, "-k", k, "--seed", 10, "-o", other)
    assert not np.array_equal(np.load(other), ra)


def test_trak_streams_scores_and_matches_a_numpy_reference(run, tmp_path):
    rng = np.random.default_rng(5)
    n, m, p, k = 80, 6, 40, 64
    tr = rng.standard_normal((n, p)).astype(np.float32)
    te = rng.standard_normal((m, p)).astype(np.float32)
    w = rng.standard_normal(n)
    c = (np.arange(n) % 2).astype(np.int64)
    files = [save(tmp_path / f"{name}.npy", arr) for name, arr in (("tr", tr), ("te", te), ("w", w), ("c", c))]
    eye = save(tmp_path / "eye.npy", np.eye(p, dtype=np.float32))
    rmat = tmp_path / "r.npy"
    run("attribute", "project", "--grads", eye, "-k", k, "--seed", 4, "--f64", "-o", rmat)
    r = np.load(rmat)
    phi, psi = tr.astype(np.float64) @ r, te.astype(np.float64) @ r
    gram = phi.T @ phi
    lam = 1e-3 * np.trace(gram) / k
    ref = psi @ np.linalg.solve(gram + lam * np.eye(k), phi.T) * w
    scores, values = tmp_path / "s.npy", tmp_path / "v.npy"
    j = json.loads(run("--json", "attribute", "trak", "--train", files[0], "--test", files[1], "--train-weights",
                       files[2], "--contributors", files[3], "-k", k, "--seed", 4, "--ridge", 1e-3, "--scores-out",
                       scores, "-o", values).stdout)
    s = np.load(scores)
    assert s.shape == (m, n) and s.dtype == np.float32
    np.testing.assert_allclose(s, ref, rtol=2e-3, atol=2e-4 * np.abs(ref).max())
    np.testing.assert_allclose(np.load(values), ref.mean(axis=0), rtol=2e-3, atol=2e-4 * np.abs(ref).max())
    assert j["contributors"]["0"] == pytest.approx(ref.mean(axis=0)[c == 0].sum(), rel=2e-3, abs=1e-4)
    assert j["lambdas"][0] == pytest.approx(lam, rel=1e-6)
    bad = run("attribute", "trak", "--train", files[0], "--train", files[0], "--test", files[1], check=False)
    assert bad.returncode == 2 and "2 --train files but 1 --test files" in bad.stderr


def test_lineage_from_scan_verdicts(run, tmp_path):
    scan = tmp_path / "scan.jsonl"
    rows = [
        {"path": "base.safetensors", "verdicts": [
            {"did": "did:web:a.example", "detected": False, "z": 1.0},
            {"did": "did:web:b.example", "detected": False, "z": 0.5}]},
        {"path": "merged.safetensors", "verdicts": [
            {"did": "did:web:a.example", "detected": True, "z": 30.0},
            {"did": "did:web:b.example", "detected": True, "z": 10.0},
            {"did": "did:web:c.example", "detected": False, "z": 3.0}]},
    ]
    scan.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "lineage.json"
    j = json.loads(run("--json", "attribute", "lineage", "merged.safetensors", "--verdicts", scan, "-o", out).stdout)
    assert j["weights"] == {"did:web:a.example": 0.75, "did:web:b.example": 0.25}
    assert json.loads(out.read_text()) == j["weights"]
    shares = {o["did"]: o["share"] for o in j["owners"]}
    assert shares["did:web:c.example"] == 0
    # Unnamed: the first file where someone is detected, with a note.
    p = run("attribute", "lineage", "--verdicts", scan)
    assert "merged.safetensors" in p.stderr and "75.00%" in p.stdout
    # Nobody detected: no shares, an empty weights object.
    j = json.loads(run("--json", "attribute", "lineage", "base.safetensors", "--verdicts", scan).stdout)
    assert j["any_detected"] is False and j["weights"] == {}
    bad = run("attribute", "lineage", "other.safetensors", "--verdicts", scan, check=False)
    assert bad.returncode == 2 and "no verdicts for 'other.safetensors'" in bad.stderr


def _blend_safetensors(a_path, b_path, out_path, wa):
    """out = wa * a + (1 - wa) * b for every f32 tensor (same layout in both files)."""
    import struct

    ba, bb = a_path.read_bytes(), b_path.read_bytes()
    n = struct.unpack("<Q", ba[:8])[0]
    header = json.loads(ba[8:8 + n])
    out = bytearray(ba)
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        s, e = (8 + n + o for o in t["data_offsets"])
        a = np.frombuffer(ba[s:e], np.float32)
        b = np.frombuffer(bb[s:e], np.float32)
        out[s:e] = (wa * a + (1 - wa) * b).astype(np.float32).tobytes()
    out_path.write_bytes(bytes(out))


def test_lineage_of_a_blend_of_two_marked_checkpoints(run, tmp_path):
    """End to end with the real verifier: a 70/30 blend of two checkpoints marked by alice and
    bob gets lineage shares near 70/30; carol, who marked nothing, gets none."""
    probe = run("synth", "checkpoint", "--help", check=False)
    if probe.returncode != 0:
        pytest.skip("didmark synth checkpoint is not in this build")
    reg = tmp_path / "registry.jsonl"
    with reg.open("w") as f:
        for name in ("alice", "bob", "carol"):
            run("id", "new", "-q", "-o", tmp_path / f"{name}.id.json")
            f.write(run("id", "export-key", tmp_path / f"{name}.id.json").stdout)
    base = tmp_path / "base.safetensors"
    run("synth", "checkpoint", "-o", base, "--params", 30_000_000)
    run("embed", base, "--id", tmp_path / "alice.id.json", "-o", tmp_path / "a.safetensors", "-q")
    run("embed", base, "--id", tmp_path / "bob.id.json", "-o", tmp_path / "b.safetensors", "-q")
    blend = tmp_path / "blend.safetensors"
    _blend_safetensors(tmp_path / "a.safetensors", tmp_path / "b.safetensors", blend, 0.7)
    out = tmp_path / "lineage.json"
    j = json.loads(run("--json", "attribute", "lineage", blend, "--registry", reg, "-o", out).stdout)
    dids = [json.loads(line)["did"] for line in reg.read_text().splitlines()]
    shares = {o["did"]: o["share"] for o in j["owners"]}
    assert shares[dids[0]] == pytest.approx(0.7, abs=0.06)
    assert shares[dids[1]] == pytest.approx(0.3, abs=0.06)
    assert shares[dids[2]] == 0
    assert json.loads(out.read_text()) == j["weights"]
