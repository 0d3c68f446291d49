"""PyTorch files read and written by the process's own torch, for the library (python/src/torch_files.cpp).

Two LibTorch builds cannot share a process: the LibTorch plugin of the CLI aborts when PyPI's
torch is already loaded. So inside Python, didmark reads .pt/.bin files with
``torch.load(path, weights_only=True, map_location="cpu")`` (the legacy and zip formats, shared
storages and views exactly as torch reads them) and writes them back with ``torch.save``, which
keeps everything the input held (OrderedDict and its ``_metadata`` included) and loads under
``weights_only=True``. Without torch installed, the library's plugin reads them instead.
"""

import bisect
import io
import os
import tempfile

_KEPT = None


def available():
    """True when torch can be imported (it is imported here at most once)."""
    global _KEPT
    if _KEPT is None:
        try:
            import torch  # noqa: F401

            _KEPT = True
        except Exception:
            _KEPT = False
    return _KEPT


def _dtypes():
    import torch

    return {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
            torch.int8, torch.uint8, torch.bool}


class _Bytes(io.RawIOBase):
    """A read-only file over bytes held elsewhere: the file as the library validated it (a
    memoryview of its mapping, alive while torch.load runs). torch copies what it reads."""

    def __init__(self, view):
        super().__init__()
        self._view = view.cast("B") if view.format != "B" else view
        self._pos = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, b):
        out = memoryview(b).cast("B")
        n = max(0, min(len(out), len(self._view) - self._pos))
        out[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n


def load(source):
    """(root, [(name, tensor)], [(name, reason)]): the object, the tensors didmark reads (each
    memory range once, contiguous), and the ones left out with the reason. `source`: a path, or
    a memoryview of the file's bytes (what the library validated before asking)."""
    import torch

    if isinstance(source, memoryview):
        with _Bytes(source) as f:
            root = torch.load(f, map_location="cpu", weights_only=True)
    else:
        root = torch.load(os.fspath(source), map_location="cpu", weights_only=True)
    carried = _dtypes()
    found, withheld = [], []

    def visit(v, name):
        # Returns a replacement when the value must change (a tensor made contiguous).
        if isinstance(v, torch.Tensor):
            if v.layout != torch.strided or v.is_quantized:
                withheld.append((name, "not a dense tensor"))
                return None
            if v.dtype not in carried:
                withheld.append((name, f"dtype {str(v.dtype).replace('torch.', '')} is not carried"))
                return None
            t = v.detach()
            repl = None
            if not t.is_contiguous():
                t = t.contiguous()
                repl = t
            found.append((name, t))
            return repl
        if isinstance(v, dict):
            for k in list(v):
                r = visit(v[k], f"{name}.{k}" if name else str(k))
                if r is not None:
                    v[k] = r
            return None
        if isinstance(v, list):
            for i, x in enumerate(v):
                r = visit(x, f"{name}.{i}" if name else str(i))
                if r is not None:
                    v[i] = r
            return None
        if isinstance(v, tuple):
            items, changed = list(v), False
            for i, x in enumerate(items):
                r = visit(x, f"{name}.{i}" if name else str(i))
                if r is not None:
                    items[i], changed = r, True
            return tuple(items) if changed else None
        return None

    r = visit(root, "")
    if r is not None:
        root = r
    # Tied weights and views share memory: keep the first name, withhold the others.
    # The kept ranges are disjoint, so only the one starting last before a range's end can
    # overlap it.
    begins, ranges, tensors = [], [], []
    for name, t in found:
        b = t.data_ptr()
        e = b + t.numel() * t.element_size()
        if b != e:
            i = bisect.bisect_left(begins, e)
            if i > 0 and ranges[i - 1][1] > b:
                withheld.append((name, f"shares memory with '{ranges[i - 1][2]}'"))
                continue
            begins.insert(i, b)
            ranges.insert(i, (b, e, name))
        tensors.append((name, t))
    return root, tensors, withheld


def save(root, path, overwrite):
    """torch.save(root) to `path`, atomically (a temporary file in the same folder, renamed)."""
    import torch

    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"'{path}' already exists")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".didmark-tmp", dir=folder)
    os.close(fd)
    try:
        torch.save(root, tmp)
        os.chmod(tmp, 0o644)
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"'{path}' already exists")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
