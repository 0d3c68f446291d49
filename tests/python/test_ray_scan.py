"""didmark.ray.scan on a local Ray instance with 2 CPUs: the verdict table matches
didmark.verify_file file by file, unreadable files become error rows, and the per-file cost
is printed (pytest -s)."""
import json
import os
import time

import numpy as np
import pytest

didmark = pytest.importorskip("didmark", reason="the didmark Python module is not built (DIDMARK_PYTHON)")
ray = pytest.importorskip("ray", reason="ray is not installed (scripts/setup.sh installs it)")
st = pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def local_ray():
    # Workers import didmark from the same place as this process (build tree or installed).
    import didmark.ray  # noqa: F401

    pkg = os.path.dirname(os.path.dirname(didmark.__file__))
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([pkg, os.environ.get("PYTHONPATH", "")])}}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=env, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("scan")
    alice, bob = didmark.Identity.from_seed(b"a" * 32), didmark.Identity.from_seed(b"b" * 32)
    registry = d / "registry.jsonl"
    registry.write_text(alice.registry_line() + "\n" + bob.registry_line() + "\n")
    rng = np.random.default_rng(0)
    files = {}
    for i, owner in enumerate([alice, bob, None, alice, None, bob]):
        w = {"model.layers.0.mlp.weight": (rng.standard_normal((2048, 2048)) * 0.02).astype(np.float32)}
        if owner is not None:
            w, _ = didmark.embed(w, owner)
        path = d / f"m{i}.safetensors"
        st.save_file(w, str(path))
        files[str(path)] = owner.did if owner else None
    bad = d / "broken.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{oops}")
    files[str(bad)] = "error"
    return registry, files


def test_scan_matches_verify_file(local_ray, corpus):
    import didmark.ray

    registry, files = corpus
    t0 = time.perf_counter()
    ds = didmark.ray.scan(list(files), registry, batch_size=2)
    rows = ds.take_all()
    wall = time.perf_counter() - t0
    by_file = {}
    for r in rows:
        by_file.setdefault(r["path"], []).append(r)
    assert set(by_file) == set(files)
    for path, owner in files.items():
        got = by_file[path]
        if owner == "error":
            assert len(got) == 1 and got[0]["error"].startswith("corrupt_input") and "broken" in got[0]["error"]
            continue
        want = didmark.verify_file(path, registry=str(registry))
        assert sorted(r["did"] for r in got) == sorted(v["did"] for v in want["verdicts"])
        for r in got:
            v = next(v for v in want["verdicts"] if v["did"] == r["did"])
            assert r["detected"] == v["detected"] and r["z"] == pytest.approx(v["z"], rel=1e-12)
            assert r["error"] is None and r["format"] == want["format"]
        assert sorted(r["did"] for r in got if r["detected"]) == ([owner] if owner else [])
    mb = sum(os.path.getsize(p) for p in files) / 1e6
    print(f"\nray scan: {len(files)} files ({mb:.0f} MB), 2 owners, 2 CPU workers: {wall:.2f} s wall "
          f"({wall / len(files):.3f} s per file, including Ray start-up of the workers)")
    # JSON Lines out, one verdict per line.
    lines = didmark.ray.verdicts_json(rows).splitlines()
    assert len(lines) == len(rows) and json.loads(lines[0])["path"] in files


def test_scan_refuses_nothing_to_do(local_ray):
    import didmark.ray

    with pytest.raises(ValueError, match="no paths"):
        didmark.ray.scan([], "registry.jsonl")
