#!/usr/bin/env python3
"""Regenerate the safetensors test corpus in this folder (valid and malformed files).

Each malformed file breaks one rule of the format; tests/io/test_safetensors.cpp expects
each to be refused with a message naming the file and the problem. The valid files are
written by the Python `safetensors` library itself.
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def raw(name, header, data=b"", length=None, pad=True):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    n = len(text) if length is None else length
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(struct.pack("<Q", n) + text + data)


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def main():
    import safetensors
    import safetensors.numpy as stnp

    rng = np.random.default_rng(7)
    stnp.save_file(
        {"weight": rng.standard_normal((64, 64), dtype=np.float32), "bias": np.zeros(64, np.float16)},
        os.path.join(HERE, "valid_small.safetensors"),
        metadata={"format": "pt", "note": "made by the safetensors library"},
    )
    b = np.arange(6, dtype=np.uint16)
    with open(os.path.join(HERE, "valid_bf16_u8.safetensors"), "wb") as f:
        f.write(safetensors.serialize({
            "x": safetensors.TensorSpec(dtype="bfloat16", shape=[2, 3], data_ptr=b.ctypes.data, data_len=b.nbytes),
            "y": safetensors.TensorSpec(dtype="uint8", shape=[3], data_ptr=b.ctypes.data, data_len=3),
        }))
    raw("valid_empty.safetensors", {})
    raw("valid_zero_sized.safetensors", {"e": t("F32", [0, 4], 0, 0), "x": t("F32", [2], 0, 8)}, b"\0" * 8)

    eight = b"\0" * 8
    raw("too_small.safetensors", b"", pad=False)
    with open(os.path.join(HERE, "too_small.safetensors"), "wb") as f:
        f.write(b"\x05\x00\x00")
    raw("truncated_header.safetensors", {"x": t("F32", [2], 0, 8)}, eight, length=4096)
    with open(os.path.join(HERE, "huge_header_length.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", 1 << 62) + b"{}" + b" " * 6)
    raw("offsets_out_of_range.safetensors", {"x": t("F32", [4], 0, 16)}, eight)
    raw("overlapping_tensors.safetensors", {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, b"\0" * 12)
    raw("gap_between_tensors.safetensors", {"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, b"\0" * 12)
    raw("wrong_byte_count.safetensors", {"x": t("F32", [3], 0, 8)}, eight)
    raw("bad_json.safetensors", b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]', eight)
    raw("unknown_dtype.safetensors", {"x": t("F33", [2], 0, 8)}, eight)
    raw("unsupported_dtype.safetensors", {"x": t("U32", [2], 0, 8)}, eight)
    raw("duplicate_names.safetensors",
        b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        eight)
    raw("metadata_not_strings.safetensors", {"__metadata__": {"n": 1}, "x": t("F32", [2], 0, 8)}, eight)
    raw("not_an_object.safetensors", b"[1, 2, 3]", eight)
    raw("trailing_bytes.safetensors", {"x": t("F32", [2], 0, 8)}, eight + b"junk")
    raw("negative_dimension.safetensors", {"x": t("F32", [-2], 0, 8)}, eight)
    raw("reversed_offsets.safetensors", {"x": t("F32", [0], 8, 0)}, eight)
    raw("shape_overflow.safetensors", {"x": t("F32", [1 << 40, 1 << 40], 0, 8)}, eight)
    raw("bad_utf8.safetensors", b'{"x\xff\xfe":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', eight)
    raw("missing_offsets.safetensors", {"x": {"dtype": "F32", "shape": [2]}}, eight)
    raw("truncated_data.safetensors", {"x": t("F32", [4], 0, 16)}, eight)


if __name__ == "__main__":
    main()
