"""didmark.ray: scan many checkpoints and datasets across a Ray cluster.

    import ray, didmark.ray
    ray.init()                                   # or ray.init(address="auto") on a cluster
    ds = didmark.ray.scan(paths, "registry.jsonl")
    ds.to_pandas()                               # one row per (file, owner) verdict

Each file is verified by :func:`didmark.verify_file` against every owner of the registry,
exactly as ``didmark scan`` does, inside a Ray Data ``map_batches`` stage whose callable class
holds one didmark engine (backend) per worker: on a GPU worker (``num_gpus=1``) the engine
is the CUDA backend, elsewhere the CPU backend. Files are read where the workers run: on a
cluster the paths must be visible to every node (a shared file system), and every node needs
the didmark package (the same wheel; see docs/python.md).
"""

import json
import time

COLUMNS = ["path", "format", "did", "detected", "z", "p_value", "log10_p", "bit_errors", "bits", "status",
           "seconds", "error"]


class Verifier:
    """The per-worker state of :func:`scan`: one backend, the registry, the verification options.

    Called on batches of ``{"path": [...]}`` and returns one row per (file, owner), or one row
    with ``error`` set for a file that could not be read (the scan goes on).
    """

    def __init__(self, registry, device="auto", scheme="auto", p_threshold=1e-9, format=None):
        import didmark

        self._didmark = didmark
        self.registry = str(registry)
        self.options = dict(scheme=scheme, p_threshold=p_threshold, format=format, device=device)
        # Made once per worker process and kept: the first call pays for it (CUDA context).
        self.backend = didmark.backend_description(device)

    def verify(self, path):
        t0 = time.perf_counter()
        try:
            out = self._didmark.verify_file(path, registry=self.registry, **self.options)
        except self._didmark.Error as e:
            return [dict(path=path, format=None, did=None, detected=False, z=float("nan"), p_value=float("nan"),
                         log10_p=float("nan"), bit_errors=-1, bits=0, status="error",
                         seconds=time.perf_counter() - t0, error=f"{e.code}: {e}")]
        rows = []
        for v in out["verdicts"]:
            rows.append(dict(path=path, format=out.get("format"), did=v.get("did"), detected=bool(v.get("detected")),
                             z=float(v.get("z", float("nan"))), p_value=float(v.get("p_value", float("nan"))),
                             log10_p=float(v.get("log10_p", float("nan"))), bit_errors=int(v.get("bit_errors", -1)),
                             bits=int(v.get("bits", 0)), status=str(v.get("status", "")),
                             seconds=time.perf_counter() - t0, error=None))
        return rows

    def __call__(self, batch):
        rows = [r for p in batch["path"] for r in self.verify(str(p))]
        return {c: [r[c] for r in rows] for c in COLUMNS}


def _gpus_available():
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1


def scan(paths, registry, *, batch_size=4, concurrency=None, num_gpus=None, device="auto", scheme="auto",
         p_threshold=1e-9, format=None, ray_remote_args=None):
    """A Ray Dataset of verdicts: one row per (file, registered owner).

    Columns: path, format, did, detected, z, p_value, log10_p, bit_errors, bits, status,
    seconds (per file), error (None, or "code: message" for a file that could not be read).
    The dataset is lazy: ``.to_pandas()``, ``.take_all()`` or ``.write_parquet(...)`` runs it.

    GPU when present: with ``num_gpus=None`` each worker takes one GPU when the cluster has
    any (``concurrency`` workers, default the number of GPUs) and otherwise one CPU
    (default: the number of CPUs). ``batch_size`` files go to a worker at a time.
    """
    import ray
    import ray.data

    if not ray.is_initialized():
        ray.init()
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no paths to scan")
    resources = ray.cluster_resources()
    if num_gpus is None:
        num_gpus = 1 if _gpus_available() else 0
    if concurrency is None:
        pool = resources.get("GPU", 0) if num_gpus else resources.get("CPU", 1)
        concurrency = max(1, min(int(pool // max(num_gpus, 1)) if num_gpus else int(pool), len(paths)))
    args = dict(ray_remote_args or {})
    if num_gpus:
        args["num_gpus"] = num_gpus
    else:
        args.setdefault("num_cpus", 1)
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=min(len(paths), 4 * concurrency))
    return ds.map_batches(
        Verifier,
        fn_constructor_kwargs=dict(registry=str(registry), device=device, scheme=scheme, p_threshold=p_threshold,
                                   format=format),
        batch_size=batch_size,
        concurrency=concurrency,
        batch_format="default",
        **args,
    )


def scan_rows(*args, **kwargs):
    """:func:`scan`, run: a list of row dicts (for small scans and tests)."""
    return scan(*args, **kwargs).take_all()


def verdicts_json(rows):
    """Rows of :func:`scan` as JSON Lines text (one verdict per line)."""
    return "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows)
