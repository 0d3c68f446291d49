#!/usr/bin/env python3
"""Regenerate the hostile-file reproductions of issue 20 in tests/data (deterministic bytes).

Each file is an input that once crashed, hung or ballooned a reader; tests/io/test_hostile.cpp
and tests/python/test_hostile_files.py expect a clean refusal (an error naming the file and
the problem, within seconds and a few MB). Large reproductions (100k-deep JSON, a 20 MB CSV
line, 200k metadata keys) are built by the tests themselves instead of being stored.

  torch/*.pt                   torch.save zips (stored entries, fixed timestamps)
  torch/seed_structured.bin    a seed for the archive fuzzer's structure-aware mode
  pickle/regress/*.pkl         raw data.pkl streams (the pickle fuzzer's regressions)
  safetensors/regress/*        safetensors headers
  npy/*.npy                    big-endian / Fortran-order / id arrays (issue 19) and bad headers
"""
import json
import os
import struct
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import torch_files  # noqa: E402  (the tests' own torch.save writer, no PyTorch needed)


def out(rel, data):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def torch_zip(rel, pickle_bytes, records=None, byteorder=b"little"):
    """A torch.save container around `pickle_bytes` with the given data/<key> records."""
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        def put(name, data):
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
        put("archive/data.pkl", pickle_bytes)
        if byteorder is not None:
            put("archive/byteorder", byteorder)
        for key, data in (records or {}).items():
            put(f"archive/data/{key}", data)
        put("archive/version", b"3\n")


def pickled_state_dict(tensors):
    """data.pkl bytes and records of {name: torch_files.Tensor} (protocol 2, as torch.save)."""
    import io
    import pickle
    buf = io.BytesIO()
    storages = {}
    with torch_files._fake_torch() as torch:
        class P(pickle.Pickler):
            def persistent_id(self, o):
                if isinstance(o, torch_files.Storage):
                    storages[o.key] = o
                    return ("storage", getattr(torch, o.kind), o.key, "cpu", o.flat.size)
                return None
        P(buf, protocol=2).dump(dict(tensors))
    return buf.getvalue(), {k: s.flat.tobytes() for k, s in storages.items()}


def main():
    # ---- PyTorch files (issue 20) ----
    # Heap corruption in the pickle rewrite (insert_mark_at): found by the pickle fuzzer.
    crash36 = b"ccollections\nOrderedDict\n)(((((R\x89oa@"
    assert len(crash36) == 36
    torch_zip("torch/insert_mark_at_36.pt", crash36)
    out("pickle/regress/insert_mark_at_36.pkl", crash36)
    # An opcode on an empty stack: SIGSEGV inside LibTorch's unpickler.
    torch_zip("torch/reduce_empty_stack.pt", b"\x80\x02R.")
    torch_zip("torch/build_empty_stack.pt", b"\x80\x02b.")
    out("pickle/regress/reduce_empty_stack.pkl", b"\x80\x02R.")
    out("pickle/regress/build_empty_stack.pkl", b"\x80\x02b.")
    # Tensors larger than their storage: 1000 x 1000 over 16 floats (out-of-bounds read),
    # and 64 x 64 over 16 (quietly "verified" over heap memory).
    st = torch_files.Storage("0", "FloatStorage", np.arange(16, dtype=np.float32))
    for name, shape in (("size_exceeds_storage", (1000, 1000)), ("size_exceeds_storage_small", (64, 64))):
        pkl, rec = pickled_state_dict({"w": torch_files.Tensor(st, 0, shape, (shape[1], 1))})
        torch_zip(f"torch/{name}.pt", pkl, rec)
    # A storage whose record is shorter than numel x item size.
    pkl, _ = pickled_state_dict({"w": torch_files.Tensor(st, 0, (16,), (1,))})
    torch_zip("torch/storage_record_short.pt", pkl, {"0": b"\0" * 8})
    # Stride 0: 22000 x 22000 views of one float: 1.9 GB once made contiguous.
    one = torch_files.Storage("0", "FloatStorage", np.ones(1, dtype=np.float32))
    pkl, rec = pickled_state_dict({"w": torch_files.Tensor(one, 0, (22000, 22000), (0, 0))})
    torch_zip("torch/stride0.pt", pkl, rec)
    # A BINUNICODE length of 0xFFFFFFFF: 4.5 GB allocated by LibTorch.
    torch_zip("torch/binunicode_ffffffff.pt", b"\x80\x02}q\x00X\xff\xff\xff\xffab")
    # 100k nested tuples: stack overflow (in LibTorch and in our own walk of the result).
    torch_zip("torch/nested_tuples_100k.pt", b"\x80\x02)" + b"\x85" * 100000 + b".")
    # A memo index of 2^32 - 1: LibTorch resizes its memo table to it.
    torch_zip("torch/memo_index_huge.pt", b"\x80\x02Nr\xff\xff\xff\xff.")
    out("pickle/regress/memo_index_huge.pkl", b"\x80\x02Nr\xff\xff\xff\xff.")
    # A list appended to itself (a cycle): our walk would never end.
    out("pickle/regress/list_cycle.pkl", b"\x80\x02]q\x00h\x00a.")
    # Big-endian storages (LibTorch 1.13 would read them as little-endian).
    pkl, rec = pickled_state_dict({"w": torch_files.Tensor(st, 0, (16,), (1,))})
    torch_zip("torch/big_endian.pt", pkl, {k: np.frombuffer(v, "<f4").astype(">f4").tobytes() for k, v in rec.items()},
              byteorder=b"big")
    # A valid little state dict (the validator must accept it).
    pkl, rec = pickled_state_dict({"a.weight": torch_files.Tensor(st, 0, (4, 4), (4, 1)),
                                   "a.t": torch_files.Tensor(st, 0, (4, 4), (1, 4))})
    torch_zip("torch/valid_small.pt", pkl, rec)
    # The same with ZIP64 records everywhere (as for files over 4 GiB): Python's zipfile writes
    # them for any size when its limit is lowered.
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 16
    try:
        torch_zip("torch/valid_zip64.pt", pkl, rec)
    finally:
        zipfile.ZIP64_LIMIT = limit
    # The same for the structure-aware mode of the archive fuzzer (fuzz_targets.hpp): one
    # record of 64 bytes, then data.pkl.
    out("torch/seed_structured.bin", bytes([1]) + struct.pack("<H", len(rec["0"])) + pkl)

    # A compressed entry (torch.save stores): refused before miniz inflates anything.
    pkl, rec = pickled_state_dict({"w": torch_files.Tensor(st, 0, (16,), (1,))})
    path = os.path.join(HERE, "torch", "compressed.pt")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in [("archive/data.pkl", pkl), ("archive/data/0", b"\0" * (1 << 16)),
                           ("archive/version", b"3\n")]:
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    # Written by PyTorch itself (2.x: data descriptors, .format_version, serialization_id),
    # when it is installed; the file is kept, so regeneration without PyTorch leaves it.
    try:
        import torch
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4))
        sd = m.state_dict()
        sd["tied"] = sd["0.weight"]
        sd["view.t"] = sd["0.weight"].t()
        torch.save(sd, os.path.join(HERE, "torch", "pytorch2_state_dict.pt"))
    except ImportError:
        pass

    # ---- safetensors (issue 20) ----
    def st_file(rel, header_bytes, data=b""):
        out(rel, struct.pack("<Q", len(header_bytes)) + header_bytes + data)
    st_file("safetensors/regress/duplicate_key_in_entry.safetensors",
            b'{"x":{"dtype":"F32","shape":[1],"dtype":"I32","data_offsets":[0,4]}}', b"\0" * 4)
    st_file("safetensors/regress/duplicate_metadata.safetensors",
            b'{"__metadata__":{"a":"1","a":"2"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4)
    st_file("safetensors/regress/deep_unknown_value.safetensors",
            b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"junk":' + b"[" * 100 + b"]" * 100 + b"}}",
            b"\0" * 4)
    st_file("safetensors/regress/escape_in_name.safetensors",
            b'{"\\u001b[2J\\u0007evil\\nline":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4)
    # /etc/passwd-like text: the header length is its first 8 bytes, never to be echoed.
    out("safetensors/regress/text_file.safetensors", b"root:x:0:0:root:/root:/bin/bash\n")

    # ---- .npy (issue 19) ----
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    np.save(os.path.join(HERE, "npy", "c_order_f32.npy"), a)
    np.save(os.path.join(HERE, "npy", "big_endian_f32.npy"), a.astype(">f4"))
    np.save(os.path.join(HERE, "npy", "fortran_f32.npy"), np.asfortranarray(a))
    np.save(os.path.join(HERE, "npy", "fortran_big_endian_f64.npy"), np.asfortranarray(a.astype(">f8")))
    ids = np.array([5, 0, 7, 2**31 + 3], dtype=np.int64)
    for dt in ("<i8", ">i8", "<u8", "<i4", ">u4", "<u4", "<i2", "<u2"):
        v = ids if dt[1:] in ("i8", "u8", "u4") else ids % 30000
        np.save(os.path.join(HERE, "npy", f"ids_{dt[0] == '>' and 'be' or 'le'}_{dt[1:]}.npy"), v.astype(dt))
    np.save(os.path.join(HERE, "npy", "ids_f32.npy"), ids.astype(np.float32))
    np.save(os.path.join(HERE, "npy", "ids_u64_too_big.npy"), np.array([1, 2**63], dtype=np.uint64))
    hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
    hdr += b" " * (70000 - len(hdr)) + b"\n"
    out("npy/header_too_long.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", len(hdr)) + hdr + b"\0" * 4)


if __name__ == "__main__":
    main()
