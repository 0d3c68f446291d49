"""torch.save files without PyTorch, for the tests.

`write_torch_save` writes the zip container of `torch.save` (PyTorch >= 1.6): an
"archive/" folder with data.pkl (pickle protocol 2), data/<key> storage records and version.
The pickle is made by Python's own pickler with stand-ins registered for the torch globals
for the time of the call, so the opcodes are what torch.save writes for a state dict: a
collections.OrderedDict carrying `_metadata`, tensors as torch._utils._rebuild_tensor_v2
with persistent storage ids ('storage', torch.FloatStorage, key, 'cpu', numel).

`read_torch_save` is the reverse, in the manner of torch.load: persistent_load reads the
storage records and _rebuild_tensor_v2 makes numpy arrays (bf16 as uint16 bits).
"""
import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile

import numpy as np

# numpy dtype per torch storage class name.
STORAGES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class Storage:
    """One storage: a flat numpy array and its torch class name."""

    def __init__(self, key, kind, flat):
        self.key, self.kind, self.flat = key, kind, flat


class Tensor:
    """A tensor view of a Storage (offset, shape, strides in elements)."""

    def __init__(self, storage, offset, shape, strides):
        self.storage, self.offset, self.shape, self.strides = storage, offset, tuple(shape), tuple(strides)

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.strides, False, collections.OrderedDict())


def tensor(array, kind=None, key=None, storages=None):
    """A contiguous Tensor holding `array` in a new Storage."""
    a = np.ascontiguousarray(array)
    kind = kind or {np.dtype(v): k for k, v in STORAGES.items() if k != "BFloat16Storage"}[a.dtype]
    st = Storage(key if key is not None else str(len(storages) if storages is not None else 0), kind, a.reshape(-1))
    if storages is not None:
        storages.append(st)
    strides, acc = [], 1
    for d in reversed(a.shape):
        strides.insert(0, acc)
        acc *= d
    return Tensor(st, 0, a.shape, strides)


@contextlib.contextmanager
def _fake_torch():
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("stand-in")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in STORAGES:
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def write_torch_save(path, obj):
    """Write `obj` (dicts, lists, numbers, Tensors) as torch.save does."""
    buf = io.BytesIO()
    storages = {}
    with _fake_torch() as torch:
        class P(pickle.Pickler):
            def persistent_id(self, o):
                if isinstance(o, Storage):
                    storages[o.key] = o
                    return ("storage", getattr(torch, o.kind), o.key, "cpu", o.flat.size)
                return None

        P(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, st in storages.items():
            z.writestr(f"archive/data/{key}", st.flat.tobytes())
        z.writestr("archive/version", "3\n")


def read_torch_save(path):
    """Load a torch.save zip into numpy arrays, the way torch.load resolves it."""
    z = zipfile.ZipFile(path)
    names = z.namelist()
    prefix = next(n for n in names if n.endswith("data.pkl"))[: -len("data.pkl")]

    def rebuild(storage, offset, shape, strides, *rest):
        itemsize = storage.itemsize
        return np.lib.stride_tricks.as_strided(storage[offset:], shape=shape,
                                               strides=[s * itemsize for s in strides]).copy()

    class U(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if module == "torch" and name in STORAGES:
                return STORAGES[name]
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
                return lambda value, type_str: value
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

        def persistent_load(self, pid):
            kind, dtype, key, location, numel = pid
            assert kind == "storage" and location == "cpu"
            data = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=dtype)
            assert data.size == numel, (data.size, numel)
            return data

    return U(io.BytesIO(z.read(prefix + "data.pkl"))).load()
