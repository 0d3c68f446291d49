"""didmark: DID-carrying watermarks in model weights and datasets, attribution, exact royalty splits.

A thin layer over the C++ library (the extension module ``didmark._didmark``); every function
here runs the same engine code as the ``didmark`` command line tool, so results agree with it.

Example::

    import numpy as np
    import didmark

    alice = didmark.Identity.new()
    weights = {"layer.0.weight": np.random.default_rng(0).standard_normal((2048, 2048), np.float32)}
    marked, report = didmark.embed(weights, alice)          # new arrays; `weights` is untouched
    verdict = didmark.verify(marked, alice.watermark_key(), alice.did)
    assert verdict["detected"] and verdict["p_value"] <= 1e-9

    didmark.embed_module(model, alice)                      # a torch nn.Module, in place
    didmark.verify_module(model, alice.watermark_key(), alice.did)["detected"]

    values, per_owner = didmark.knn_shapley(x, y, q, yq, k=5, contributors=owner_ids)
    payouts = didmark.split(10**20, {"did:web:a.example": 0.7, "did:web:b.example": 0.3})

Arrays are numpy arrays or tensors exported through DLPack (torch tensors on the CPU or a GPU,
bfloat16 included), C-contiguous; they are read in place, without copies, and the GIL is
released while the library works. torch is optional: nothing here imports it until a torch
object is passed. Errors from the library raise :class:`didmark.Error` (a ``RuntimeError``)
whose ``code`` names the kind (``"invalid_argument"``, ``"not_found"``, ...); arrays of a dtype
or layout didmark does not take raise :class:`didmark.ArrayTypeError`, both a ``didmark.Error``
and a ``TypeError``. ``device="auto"|"cpu"|"cuda"`` picks the backend (``auto``:
``$DIDMARK_DEVICE``, else the GPU when one is present; CUDA arrays choose ``cuda``).
Submodules: :mod:`didmark.ray` (scans over Ray Data), :mod:`didmark.plot` (figures). See
docs/python.md.
"""

import os as _os

# The LibTorch plugin (PyTorch files) and the CLI binary installed with the package: the
# library looks for the plugin at $DIDMARK_TORCH_PLUGIN first.
_HERE = _os.path.dirname(_os.path.abspath(__file__))
_PLUGIN = _os.path.join(_HERE, "bin", "libdidmark_torch.so")
if _os.path.isfile(_PLUGIN):
    _os.environ.setdefault("DIDMARK_TORCH_PLUGIN", _PLUGIN)

from ._didmark import (  # noqa: E402,F401  (re-exports)
    ArrayTypeError,
    Error,
    Identity,
    __version__,
    backend_description,
    codeword,
    cuda_available,
    cuda_compiled,
    embed,
    embed_array,
    embed_file,
    knn_shapley,
    load_registry,
    parse_did,
    project,
    rademacher_rows,
    split,
    trak_arrays,
    verify,
    verify_array,
    verify_file,
    verify_signature,
)
from ._module import embed_module, module_tensors, verify_module  # noqa: E402
from ._trak import trak  # noqa: E402

__all__ = [
    "ArrayTypeError",
    "Error",
    "Identity",
    "__version__",
    "backend_description",
    "cli_path",
    "codeword",
    "cuda_available",
    "cuda_compiled",
    "embed",
    "embed_array",
    "embed_file",
    "embed_module",
    "knn_shapley",
    "load_registry",
    "module_tensors",
    "parse_did",
    "project",
    "rademacher_rows",
    "split",
    "trak",
    "trak_arrays",
    "verify",
    "verify_array",
    "verify_file",
    "verify_module",
    "verify_signature",
]


def cli_path():
    """The path of the ``didmark`` command line binary installed with this package, or None."""
    exe = _os.path.join(_HERE, "bin", "didmark")
    return exe if _os.access(exe, _os.X_OK) else None
