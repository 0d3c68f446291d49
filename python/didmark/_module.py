"""embed_module / verify_module: the state dict of a torch ``nn.Module``, in place, no copies."""

from ._didmark import embed as _embed
from ._didmark import verify as _verify


def module_tensors(module, *, contiguous=False):
    """{name: tensor} of ``module.state_dict()``, each storage once.

    Tied weights (one tensor under two names) keep their first name, as the file readers do.
    The tensors share memory with the module's parameters and buffers (detached views). With
    ``contiguous=True`` the rare non-contiguous tensor is passed as ``.contiguous()`` (a copy);
    otherwise it raises :class:`didmark.ArrayTypeError` when used.
    """
    if not hasattr(module, "state_dict"):
        raise TypeError(f"module must be a torch nn.Module (or have state_dict()), not {type(module).__name__}")
    out, seen = {}, set()
    for name, t in module.state_dict(keep_vars=False).items():
        if not hasattr(t, "__dlpack__"):
            continue  # extra state of other kinds
        key = (t.data_ptr(), t.numel(), t.dtype, str(t.device)) if t.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[name] = t.contiguous() if contiguous and not t.is_contiguous() else t
    return out


def embed_module(module, key, owner=None, *, in_place=True, **options):
    """Mark an ``nn.Module``'s weights with ``key`` and ``owner`` (as :func:`didmark.embed`).

    ``in_place=True`` (the default) writes the mark into the module's own parameters (CPU or
    CUDA, any floating dtype including bfloat16; no copy) and returns the report.
    ``in_place=False`` leaves the module untouched and returns ``(state_dict, report)`` with new
    tensors. Options (strength, scheme, max_change, include, names, device) as for embed().
    """
    tensors = module_tensors(module)
    import torch

    with torch.no_grad():
        marked, report = _embed(tensors, key, owner, in_place=in_place, **options)
    return report if in_place else (marked, report)


def verify_module(module, key, owner=None, **options):
    """Blind verification of (key, owner) in an ``nn.Module``'s state dict, read in place.

    Returns the verdict dict of :func:`didmark.verify`. Options (scheme, p_threshold, include,
    names, device) as for verify().
    """
    return _verify(module_tensors(module, contiguous=True), key, owner, **options)
