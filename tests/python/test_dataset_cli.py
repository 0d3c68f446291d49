"""Dataset marks through the CLI: synthetic data, embed/verify of CSV tables and .npy arrays,
attacks, JSON fields and exit codes."""
import csv
import io
import json

import pytest

np = pytest.importorskip("numpy")


@pytest.fixture
def has_embed(run):
    listing = run("--help").stdout.split("Subcommands:")[-1].splitlines()
    subcommands = {line.split()[0] for line in listing if line.startswith("  ") and line.strip()}
    if "embed" not in subcommands or "verify" not in subcommands:
        pytest.skip("didmark embed/verify are not in this build")


@pytest.fixture
def ids(run, tmp_path):
    """Two identities and a registry of their keys."""
    out = {}
    reg = tmp_path / "registry.jsonl"
    with open(reg, "w") as f:
        for name in ("alice", "bob"):
            path = tmp_path / f"{name}.id.json"
            run("id", "new", "-q", "-o", path)
            f.write(run("id", "export-key", path).stdout.strip() + "\n")
            out[name] = path
    out["registry"] = reg
    return out


def verdicts(p):
    j = json.loads(p.stdout)
    if isinstance(j, list):
        return j
    return j.get("verdicts", j.get("owners", [j]))


def test_synth_table_is_valid_csv(run, tmp_path):
    f = tmp_path / "t.csv"
    run("synth", "table", "-o", f, "--rows", 1000)
    rows = list(csv.reader(open(f, newline="")))
    assert rows[0] == ["id", "name", "city", "age", "income", "score", "visits"]
    assert len(rows) == 1001
    assert all(len(r) == 7 for r in rows)
    assert any("," in r[1] or '"' in r[1] for r in rows[1:])  # quoting is exercised
    # refuses to overwrite, exit code 2
    assert run("synth", "table", "-o", f, "--rows", 10, check=False).returncode == 2


def test_synth_array_and_subset(run, tmp_path):
    a, i = tmp_path / "a.npy", tmp_path / "ids.npy"
    run("synth", "array", "-o", a, "--rows", 500, "--dim", 16, "--ids-out", i)
    x, ids = np.load(a), np.load(i)
    assert x.shape == (500, 16) and x.dtype == np.float32 and ids.dtype == np.int64
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    s, si = tmp_path / "s.npy", tmp_path / "sids.npy"
    run("synth", "subset", "-i", a, "--ids", i, "-o", s, "--ids-out", si, "--fraction", 0.2)
    y, yi = np.load(s), np.load(si)
    assert y.shape == (100, 16)
    pos = {v: k for k, v in enumerate(ids)}
    for row, ident in zip(y, yi):
        assert np.array_equal(row, x[pos[ident]])
    t, ts = tmp_path / "t.csv", tmp_path / "ts.csv"
    run("synth", "table", "-o", t, "--rows", 300)
    run("synth", "subset", "-i", t, "-o", ts, "--fraction", 0.5)
    orig = {r[0]: r for r in csv.reader(open(t, newline=""))}
    sub = list(csv.reader(open(ts, newline="")))
    assert len(sub) == 151 and all(orig[r[0]] == r for r in sub)


def test_malformed_csv_names_line_and_column(run, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('id,a\n1,2\n3,x"y\n')
    p = run("synth", "subset", "-i", bad, "-o", tmp_path / "o.csv", check=False)
    assert p.returncode == 2
    assert "line 3, column 4" in p.stderr and "bad.csv" in p.stderr


def test_csv_embed_verify(run, tmp_path, has_embed, ids):
    t, m = tmp_path / "t.csv", tmp_path / "m.csv"
    run("synth", "table", "-o", t, "--rows", 20000)
    e = run("--json", "embed", t, "-o", m, "--id", ids["alice"])
    ej = json.loads(e.stdout)
    assert "error" not in ej
    original, marked = open(t, "rb").read().split(b"\n"), open(m, "rb").read().split(b"\n")
    assert original[0] == marked[0] and len(original) == len(marked)
    changed = sum(a != b for a, b in zip(original, marked))
    assert 500 < changed < 1500  # ~1 row in 20 changes one cell
    p = run("--json", "verify", m, "--registry", ids["registry"], check=False)
    vs = verdicts(p)
    assert [v["detected"] for v in vs] == [True, False]
    for k in ("did", "detected", "z", "p_value", "bit_errors", "bits", "elements", "tensors", "matches"):
        assert k in vs[0]
    assert vs[0]["p_value"] <= 1e-9
    assert run("verify", m, "--id", ids["alice"], check=False).returncode == 0
    assert run("verify", t, "--id", ids["alice"], check=False).returncode == 1
    # subset + shuffle
    s = tmp_path / "s.csv"
    run("synth", "subset", "-i", m, "-o", s, "--fraction", 0.1)
    assert run("verify", s, "--id", ids["alice"], check=False).returncode == 0
    # dataset options reach the handler
    m2 = tmp_path / "m2.csv"
    run("embed", t, "-o", m2, "--id", ids["alice"], "--columns", "income", "--gamma", 4, "--key-column", "id")
    assert run("verify", m2, "--id", ids["alice"], "--columns", "income", "--gamma", 4, check=False).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("id,a\n1,2\n3\n")
    p = run("verify", bad, "--id", ids["alice"], check=False)
    assert p.returncode == 2 and "line 3" in p.stderr


def test_npy_embed_verify(run, tmp_path, has_embed, ids):
    a, i, m = tmp_path / "a.npy", tmp_path / "ids.npy", tmp_path / "m.npy"
    run("synth", "array", "-o", a, "--rows", 10000, "--dim", 64, "--ids-out", i)
    p = run("embed", a, "-o", m, "--id", ids["alice"], check=False)
    assert p.returncode == 2 and "--fixed-order" in p.stderr
    ej = json.loads(run("--json", "embed", a, "-o", m, "--id", ids["alice"], "--ids", i).stdout)
    assert ej.get("min_cosine", 1) >= 0.999
    x, y = np.load(a), np.load(m)
    cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert cos.min() >= 0.999
    vs = verdicts(run("--json", "verify", m, "--registry", ids["registry"], "--ids", i, check=False))
    assert [v["detected"] for v in vs] == [True, False]
    s, si = tmp_path / "s.npy", tmp_path / "si.npy"
    run("synth", "subset", "-i", m, "--ids", i, "-o", s, "--ids-out", si, "--fraction", 0.5)
    assert run("verify", s, "--id", ids["alice"], "--ids", si, check=False).returncode == 0
    # float16 cast
    h = tmp_path / "h.npy"
    np.save(h, y.astype(np.float16))
    assert run("verify", h, "--id", ids["alice"], "--ids", i, check=False).returncode == 0
