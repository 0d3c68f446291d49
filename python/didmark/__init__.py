"""didmark: DID-carrying watermarks in model weights, exact attribution, exact royalty splits.

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

    values, per_owner = didmark.knn_shapley(x, y, q, yq, k=5, contributors=owner_ids)
    payouts = didmark.split(10**20, {"did:web:a.example": 0.7, "did:web:b.example": 0.3})

Arrays are numpy arrays (float64, float32 or float16 for weights), C-contiguous; they are read
in place, without copies, and the GIL is released while the library works. Errors from the
library raise :class:`didmark.Error` (a ``RuntimeError``) whose ``code`` names the kind
(``"invalid_argument"``, ``"not_found"``, ...). ``device="auto"|"cpu"|"cuda"`` picks the
backend (``auto``: ``$DIDMARK_DEVICE``, else the GPU when one is present). See docs/python.md.
"""

from ._didmark import (  # noqa: F401  (re-exports)
    Error,
    Identity,
    __version__,
    backend_description,
    codeword,
    cuda_available,
    cuda_compiled,
    embed,
    embed_file,
    knn_shapley,
    load_registry,
    parse_did,
    split,
    verify,
    verify_file,
    verify_signature,
)

__all__ = [
    "Error",
    "Identity",
    "__version__",
    "backend_description",
    "codeword",
    "cuda_available",
    "cuda_compiled",
    "embed",
    "embed_file",
    "knn_shapley",
    "load_registry",
    "parse_did",
    "split",
    "verify",
    "verify_file",
    "verify_signature",
]
