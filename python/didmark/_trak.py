"""didmark.trak: TRAK-style attribution scores for a torch model, streamed in tiles.

Per-example gradients come from torch.func (``vmap(grad(...))`` over a batch), are projected by
the engine's keyed Rademacher projection (:func:`didmark.project`: R is a pure function of
(seed, i, j), generated in tiles, never stored, the same on every backend), and only the
projected rows (N x k and M x k) are kept. The kernel and scores then follow the engine's
``trak`` (docs/attribution.md): S = Psi (Phi^T Phi + lambda I)^-1 Phi^T, lambda = ridge *
trace(Phi^T Phi) / k, solved by Cholesky in float64; S is written tile by tile into a memory-
mapped float32 .npy (queries x train), never held whole in memory.
"""

import os
import tempfile
import time

import numpy as np

from ._didmark import Error, project


def _batches(data, batch_size):
    """(inputs, targets) pairs: slices of a (X, Y) pair of tensors, or the items of an iterable."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and hasattr(data[0], "shape") and hasattr(data[1], "shape"):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"inputs have {len(x)} rows and targets {len(y)}")
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
        return
    for item in data:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError("train/test must be (inputs, targets) tensors or an iterable of (inputs, targets) batches")
        yield item[0], item[1]


class _Gradients:
    """Per-example gradients of loss_fn(model(x), y) with respect to the model's trainable parameters."""

    def __init__(self, model, loss_fn):
        import torch
        from torch.func import functional_call, grad, vmap

        self.torch = torch
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not self.names:
            raise ValueError("the model has no parameter that requires grad")
        params = dict(model.named_parameters())
        self.params = {n: params[n].detach() for n in self.names}
        self.buffers = {n: b.detach() for n, b in model.named_buffers()}
        self.p = sum(v.numel() for v in self.params.values())
        self.device = next(iter(self.params.values())).device

        def loss_one(ps, bs, x, y):
            out = functional_call(model, (ps, bs), (x.unsqueeze(0),))
            return loss_fn(out, y.unsqueeze(0))

        self.fn = vmap(grad(loss_one), in_dims=(None, None, 0, 0))

    def __call__(self, x, y):
        torch = self.torch
        x, y = torch.as_tensor(x).to(self.device), torch.as_tensor(y).to(self.device)
        g = self.fn(self.params, self.buffers, x, y)
        flat = torch.cat([g[n].reshape(len(x), -1) for n in self.names], dim=1)
        # The engine's projection reads host memory (a CUDA backend stages it in chunks).
        return flat.detach().to("cpu").contiguous()


def _project_all(grads, data, batch_size, k, seed, device):
    rows, t_grad, t_proj = [], 0.0, 0.0
    it = _batches(data, batch_size)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        if batch is None:
            break
        g = grads(*batch)
        t1 = time.perf_counter()
        rows.append(project(g, k=k, seed=seed, dtype="float32", device=device))
        t_grad += t1 - t0
        t_proj += time.perf_counter() - t1
    if not rows:
        raise ValueError("no examples were given")
    return np.concatenate(rows), t_grad, t_proj


def _write_scores(path, z, phi, overwrite, query_tile, train_tile):
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise Error(f"'{path}' already exists (pass overwrite=True)")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        m, n = z.shape[0], phi.shape[0]
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(m, n))
        for q0 in range(0, m, query_tile):
            zq = z[q0:q0 + query_tile]
            for j0 in range(0, n, train_tile):
                out[q0:q0 + len(zq), j0:j0 + train_tile] = zq @ phi[j0:j0 + train_tile].astype(np.float64).T
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def trak(model, loss_fn, train, test, *, proj_dim=2048, seed=0, ridge=1e-6, lambda_=None, batch_size=32,
         contributors=None, scores=None, overwrite=False, query_tile=1024, train_tile=8192, device="auto"):
    """TRAK-style scores of the training examples for the test examples, from a torch model.

    ``train`` and ``test`` are ``(inputs, targets)`` tensors (sliced into ``batch_size`` rows) or
    iterables of ``(inputs, targets)`` batches (a DataLoader). The gradient of
    ``loss_fn(model(x[None]), y[None])`` with respect to every parameter that requires grad is
    taken per example (torch.func.vmap of grad, on the model's device), projected to
    ``proj_dim`` dimensions with the keyed projection of ``seed`` (:func:`didmark.project`), and
    only the projections are kept. Then S = Psi (Phi^T Phi + lambda I)^-1 Phi^T, with
    lambda = ridge * trace(Phi^T Phi) / proj_dim unless ``lambda_`` is given.

    Returns a dict: ``values`` (float64, one per training example: its mean score over the test
    examples), ``contributors`` ({id: summed value} when ``contributors`` gives an integer id
    per training example), ``train``, ``queries``, ``k``, ``lambda``, ``scores`` (the path, or
    None), ``grad_seconds``, ``project_seconds``, ``seconds``. With ``scores=PATH`` the whole
    score matrix (queries x train, float32) is written to a .npy tile by tile, atomically, and
    can be opened with ``numpy.load(PATH, mmap_mode="r")``. Deterministic: the same model,
    data and seed give the same bytes.
    """
    t0 = time.perf_counter()
    k, train_tile = int(proj_dim), int(train_tile)
    if k < 1:
        raise ValueError("proj_dim must be at least 1")
    grads = _Gradients(model, loss_fn)
    phi, g1, p1 = _project_all(grads, train, batch_size, k, seed, device)
    psi, g2, p2 = _project_all(grads, test, batch_size, k, seed, device)
    n, m = phi.shape[0], psi.shape[0]

    # Phi^T Phi and the per-row values in float64, a tile of rows at a time.
    kernel = np.zeros((k, k))
    for j0 in range(0, n, train_tile):
        rows = phi[j0:j0 + train_tile].astype(np.float64)
        kernel += rows.T @ rows
    lam = float(lambda_) if lambda_ is not None else ridge * float(np.trace(kernel)) / k
    if lam < 0:
        raise ValueError("lambda_ must be >= 0")
    try:
        chol = np.linalg.cholesky(kernel + lam * np.eye(k))
    except np.linalg.LinAlgError:
        raise Error("trak: Phi^T Phi + lambda I is not positive definite; raise ridge or lambda_") from None
    # z = Psi (Phi^T Phi + lambda I)^-1, by two triangular solves.
    z = np.linalg.solve(chol.T, np.linalg.solve(chol, psi.T.astype(np.float64))).T
    zbar = z.mean(axis=0)
    values = np.concatenate([phi[j0:j0 + train_tile].astype(np.float64) @ zbar for j0 in range(0, n, train_tile)])

    totals = {}
    if contributors is not None:
        ids = np.asarray(contributors)
        if ids.shape != (n,) or ids.dtype.kind not in "iu":
            raise ValueError(f"contributors must be {n} integer ids, one per training example")
        for c in np.unique(ids):
            totals[int(c)] = float(values[ids == c].sum())

    path = None
    if scores is not None:
        path = _write_scores(scores, z, phi, overwrite, int(query_tile), int(train_tile))
    return {
        "values": values,
        "contributors": totals,
        "train": n,
        "queries": m,
        "k": k,
        "params": grads.p,
        "lambda": lam,
        "scores": path,
        "grad_seconds": g1 + g2,
        "project_seconds": p1 + p2,
        "seconds": time.perf_counter() - t0,
    }
