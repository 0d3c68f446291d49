"""Hostile files through the CLI (issue 20): each reproduction ends in a clean exit (0, 1 or 2,
never a signal) within seconds and under 1 GB, with a message that names the file and quotes
nothing raw. The reproductions are in tests/data (make_hostile.py) or built here."""
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
GB = 1 << 30

# Runs the command as the only child of a small Python process that reports the child's
# peak resident memory (ru_maxrss of its children) on its last stderr line.
_WRAP = r"""
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True)
sys.stdout.buffer.write(p.stdout)
sys.stderr.buffer.write(p.stderr)
sys.stderr.write("\n@@ rc=%d maxrss_kb=%d\n" % (p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
"""


def measured(cli, *args, timeout=30):
    """(returncode, stdout, stderr, peak RSS bytes, seconds). A signal shows as rc < 0."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", _WRAP, cli, *map(str, args)], capture_output=True, timeout=timeout)
    seconds = time.monotonic() - t0
    err = p.stderr.decode("utf-8", "replace")
    head, _, tail = err.rpartition("\n@@ ")
    fields = dict(kv.split("=") for kv in tail.split())
    return int(fields["rc"]), p.stdout.decode("utf-8", "replace"), head, int(fields["maxrss_kb"]) * 1024, seconds


def clean(rc, rss, seconds, limit_s=10):
    assert rc in (0, 1, 2, 3), f"exit {rc} (a signal when negative)"  # 3: nothing eligible
    assert rss < GB, f"{rss / 2**20:.0f} MB"
    assert seconds < limit_s, f"{seconds:.1f} s"


def no_control(text):
    bad = [c for c in text if (ord(c) < 0x20 and c not in "\n") or ord(c) == 0x7F]
    assert not bad, repr(text[:300])


@pytest.fixture(scope="module")
def owner(cli, tmp_path_factory):
    d = tmp_path_factory.mktemp("owner")
    f = d / "alice.id.json"
    did = subprocess.run([cli, "id", "new", "-o", f], capture_output=True, text=True, check=True).stdout.strip()
    line = subprocess.run([cli, "id", "export-key", f], capture_output=True, text=True, check=True).stdout.strip()
    reg = d / "registry.jsonl"
    reg.write_text(line + "\n")
    return {"id": f, "did": did, "registry": reg}


def torch_enabled(cli):
    return "needs a build" not in subprocess.run([cli, "formats"], capture_output=True, text=True).stdout


REPROS = {
    "insert_mark_at_36.pt": "does not start with PROTO",
    "reduce_empty_stack.pt": "REDUCE needs 2 values",
    "build_empty_stack.pt": "BUILD needs 1 value",
    "size_exceeds_storage.pt": "run past its storage",
    "size_exceeds_storage_small.pt": "run past its storage",
    "storage_record_short.pt": "its record holds 8 bytes",
    "stride0.pt": "kTorchMaxViewFactor",
    "binunicode_ffffffff.pt": "runs past the end of the pickle",
    "nested_tuples_100k.pt": "kPickleMaxDepth",
    "memo_index_huge.pt": "memo index",
    "big_endian.pt": "not little-endian",
    "compressed.pt": "is compressed",
}


@pytest.mark.parametrize("name", sorted(REPROS))
def test_torch_reproductions(cli, owner, name):
    rc, out, err, rss, s = measured(cli, "--json", "verify", DATA / "torch" / name, "--id", owner["id"])
    clean(rc, rss, s)
    assert rc == 2
    e = json.loads(out)["error"]
    assert e["code"] in ("corrupt_input", "unsupported")
    assert name in e["message"]
    if torch_enabled(cli):
        assert REPROS[name] in e["message"], e["message"]
        assert "0x7f" not in e["message"].lower()  # no library addresses or backtraces


def e_status(out):
    return json.loads(out)["verdicts"][0]["status"]


def test_torch_files_that_are_fine(cli, owner):
    if not torch_enabled(cli):
        pytest.skip("built without LibTorch")
    for name in ("valid_small.pt", "pytorch2_state_dict.pt"):
        rc, out, err, rss, s = measured(cli, "--json", "verify", DATA / "torch" / name, "--id", owner["id"])
        clean(rc, rss, s)
        # Read, and of course not marked: 1 (not detected) or 3 (tensors too small to carry a mark).
        assert rc in (1, 3), err
        assert e_status(out) in ("not_detected", "no_eligible_data")


def st_bytes(header, data=b""):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h)) + h + data


def test_deep_json_header(cli, owner, tmp_path):
    deep = "[" * 100000 + "]" * 100000
    f = tmp_path / "deep.safetensors"
    f.write_bytes(st_bytes('{"x":{"dtype":"F32","shape":' + deep + ',"data_offsets":[0,4]}}', b"\0" * 4))
    rc, out, err, rss, s = measured(cli, "--json", "verify", f, "--id", owner["id"])
    clean(rc, rss, s)
    assert rc == 2
    msg = json.loads(out)["error"]["message"]
    assert "shape entry that is not a non-negative integer" in msg and len(msg) < 300, msg
    g = tmp_path / "deep2.safetensors"  # deep inside a key didmark skips
    g.write_bytes(st_bytes('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"y":' + deep + '}}', b"\0" * 4))
    rc, out, err, rss, s = measured(cli, "--json", "verify", g, "--id", owner["id"])
    clean(rc, rss, s)
    assert rc == 2 and "deeper than 64" in json.loads(out)["error"]["message"]
    # One such file no longer ends a scan: the good file next to it is still verified.
    good = tmp_path / "good.safetensors"
    w = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    good.write_bytes(st_bytes(json.dumps({"w": {"dtype": "F32", "shape": [64, 64], "data_offsets": [0, w.nbytes]}}),
                              w.tobytes()))
    rc, out, err, rss, s = measured(cli, "scan", tmp_path, "--registry", owner["registry"])
    clean(rc, rss, s)
    lines = [json.loads(x) for x in out.splitlines()]
    assert {Path(x["path"]).name for x in lines} == {"deep.safetensors", "deep2.safetensors", "good.safetensors"}
    assert [x for x in lines if Path(x["path"]).name == "good.safetensors"][0].get("verdicts") is not None


def test_quadratic_headers_are_linear(cli, owner, tmp_path):
    meta = {f"k{i}": "v" for i in range(60000)}
    w = np.zeros(4, np.float32)
    f = tmp_path / "meta.safetensors"
    f.write_bytes(st_bytes(json.dumps({"__metadata__": meta, "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}),
                           w.tobytes()))
    rc, out, err, rss, s = measured(cli, "--json", "verify", f, "--id", owner["id"])
    clean(rc, rss, s, limit_s=5)
    assert rc == 3  # parsed whole; its one tiny tensor is not eligible (exit 3: nothing to test)


def test_fifos_never_block(cli, owner, tmp_path):
    fifo = tmp_path / "in.safetensors"
    os.mkfifo(fifo)
    for args in (["verify", fifo, "--id", owner["id"]],
                 ["verify", DATA / "safetensors" / "valid_small.safetensors", "--id", fifo],
                 ["verify", DATA / "safetensors" / "valid_small.safetensors", "--registry", fifo]):
        rc, out, err, rss, s = measured(cli, "--json", *args, timeout=20)
        clean(rc, rss, s, limit_s=5)
        assert rc == 2
        msg = json.loads(out)["error"]["message"]
        assert "FIFO" in msg and "in.safetensors" in msg, msg
    # A shard of a sharded checkpoint that is a FIFO.
    d = tmp_path / "sharded"
    d.mkdir()
    os.mkfifo(d / "model-00001.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001.safetensors"}}))
    rc, out, err, rss, s = measured(cli, "--json", "verify", d / "model.safetensors.index.json", "--id", owner["id"],
                                    timeout=20)
    clean(rc, rss, s, limit_s=5)
    assert rc == 2 and "FIFO" in json.loads(out)["error"]["message"]


def test_force_never_replaces_a_fifo(cli, owner, tmp_path):
    out_fifo = tmp_path / "out.safetensors"
    os.mkfifo(out_fifo)
    rc, out, err, rss, s = measured(cli, "--json", "embed", DATA / "safetensors" / "valid_small.safetensors",
                                    "-o", out_fifo, "--force", "--id", owner["id"], "--strength", "0.05",
                                    "--max-change", "0.2", timeout=20)
    clean(rc, rss, s, limit_s=5)
    assert rc == 2, out
    assert "FIFO" in json.loads(out)["error"]["message"]
    assert out_fifo.is_fifo()


def test_catastrophic_tensor_regex(cli, owner, tmp_path):
    names = ["a" * 60000 + ".y", "ab" * 30000, "x" * 100000 + "c", "w"]
    header, data, off = {}, b"", 0
    for n in names:
        w = np.random.default_rng(len(n)).standard_normal((64, 64)).astype(np.float32)
        header[n] = {"dtype": "F32", "shape": [64, 64], "data_offsets": [off, off + w.nbytes]}
        data += w.tobytes()
        off += w.nbytes
    f = tmp_path / "names.safetensors"
    f.write_bytes(st_bytes(json.dumps(header), data))
    for pattern in ("^(([a-z._0-9]*)*)*X$", "(a|b)*c", "(x+x+)+y"):
        rc, out, err, rss, s = measured(cli, "--json", "verify", f, "--id", owner["id"], "--tensors", pattern)
        clean(rc, rss, s, limit_s=5)
        assert rc in (1, 2, 3), err  # 3: the pattern selects no tensor
    rc, out, err, rss, s = measured(cli, "--json", "verify", f, "--id", owner["id"], "--tensors", "a" * 5000)
    clean(rc, rss, s)
    assert rc == 2 and "kMaxTensorPatternBytes" in json.loads(out)["error"]["message"]


def test_csv_line_of_fields(cli, owner, tmp_path):
    f = tmp_path / "wide.csv"
    f.write_bytes(b"a," * (10 << 20) + b"a\n1\n")
    rc, out, err, rss, s = measured(cli, "--json", "verify", f, "--id", owner["id"])
    clean(rc, rss, s)
    assert rc == 2
    assert len(out) < 2000 and len(err) < 2000
    assert "kCsvMaxColumns" in json.loads(out)["error"]["message"]


def test_cr_only_csv(cli, owner, tmp_path):
    f = tmp_path / "mac.csv"
    f.write_bytes(b"id,name,score\r" + b"".join(b"%d,n%d,%d.5\r" % (i, i, i) for i in range(20000)))
    rc, out, err, rss, s = measured(cli, "--json", "verify", f, "--id", owner["id"])
    clean(rc, rss, s)
    assert rc == 2
    msg = json.loads(out)["error"]["message"]
    assert "CR only" in msg and len(msg) < 500


def test_control_characters_in_names_are_escaped(cli, owner, tmp_path):
    f = tmp_path / "evil.safetensors"
    f.write_bytes(st_bytes('{"\\u001b[2J\\u0007x":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4))
    rc, out, err, rss, s = measured(cli, "verify", f, "--id", owner["id"])
    clean(rc, rss, s)
    assert rc == 2
    no_control(out)
    no_control(err)
    assert "\\x1b[2J\\x07x" in err
