"""The fine-tuning attack: ``python3 -m didmark.finetune IN.safetensors -o OUT.safetensors --steps K``.

A thief who fine-tunes a stolen model moves every weight a little. This trains a Hugging Face
model (architecture from the ``config.json`` beside IN, weights from IN) for K steps on a small
built-in task and writes the result in the input's layout (same names, shapes and dtypes,
tensors the model does not own copied through):

* ``--mode full``: every parameter trained (AdamW);
* ``--mode lora``: rank-r adapters (A, B) on every linear layer, trained, then merged into the
  weights (W + B A * alpha / r): what LoRA users publish.

The built-in task needs no data set: random token sequences, and a linear head that learns to
tell from the mean-pooled hidden state whether a sequence holds one of a fixed set of token ids
(a keyword-spotting task). Deterministic under ``--seed`` on the CPU.

Needs torch and transformers (optional dependencies of the lab); runs as a script too.
"""
import argparse
import json
import os
import sys


def _load(path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    folder = os.path.dirname(os.path.abspath(path))
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.exists(cfg_path):
        raise SystemExit(f"{path}: no config.json beside it (needed to build the model)")
    cfg = AutoConfig.from_pretrained(folder)
    model = AutoModel.from_config(cfg)
    sd = load_file(path)
    own = model.state_dict()
    # Hugging Face checkpoints may carry a prefix ("bert.") that the bare model does not.
    prefix = ""
    for k in sd:
        for o in own:
            if k.endswith(o) and k != o and not prefix:
                prefix = k[: len(k) - len(o)]
    mapped = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and k[len(prefix):] in own}
    missing = [k for k in own if k not in mapped and "position_ids" not in k]
    if len(missing) > len(own) // 2:
        raise SystemExit(f"{path}: the weights do not fit the config's model ({len(missing)} tensors missing)")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=False)
    return model.float(), cfg, sd, prefix, torch


class _LoRA:
    def __init__(self, torch, linear, rank, alpha, gen):
        self.linear, self.scale = linear, alpha / rank
        out_f, in_f = linear.weight.shape
        self.a = torch.nn.Parameter(torch.randn(rank, in_f, generator=gen) * (1 / in_f ** 0.5))
        self.b = torch.nn.Parameter(torch.zeros(out_f, rank))
        self.forward = linear.forward
        linear.weight.requires_grad_(False)
        if linear.bias is not None:
            linear.bias.requires_grad_(False)
        lora = self

        def fwd(x):
            return torch.nn.functional.linear(x, linear.weight + lora.b @ lora.a * lora.scale, linear.bias)

        linear.forward = fwd

    def merge(self):
        with __import__("torch").no_grad():
            self.linear.weight += self.b @ self.a * self.scale


def finetune(path, out, steps=100, mode="full", lr=None, seed=0, rank=8, batch=8, length=16):
    model, cfg, sd, prefix, torch = _load(path)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vocab = getattr(cfg, "vocab_size", 1000)
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd")
    keywords = torch.randint(5, vocab, (8,), generator=gen)
    head = torch.nn.Linear(hidden, 2)
    loras = []
    if mode == "lora":
        for m in list(model.modules()):
            if isinstance(m, torch.nn.Linear):
                loras.append(_LoRA(torch, m, rank, 2 * rank, gen))
        for p in model.parameters():
            p.requires_grad_(False)
        params = [p for lo in loras for p in (lo.a, lo.b)] + list(head.parameters())
        lr = lr or 1e-3
    else:
        params = list(model.parameters()) + list(head.parameters())
        lr = lr or 5e-5
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        x = torch.randint(5, vocab, (batch, length), generator=gen)
        y = torch.randint(0, 2, (batch,), generator=gen)
        pos = torch.randint(0, length, (batch,), generator=gen)
        kw = keywords[torch.randint(0, len(keywords), (batch,), generator=gen)]
        x[y == 1, pos[y == 1]] = kw[y == 1]
        h = model(input_ids=x).last_hidden_state.mean(1)
        loss = torch.nn.functional.cross_entropy(head(h), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for lo in loras:
        lo.merge()
    trained = model.state_dict()
    result = {}
    for k, v in sd.items():
        kk = k[len(prefix):] if k.startswith(prefix) else None
        if kk in trained and trained[kk].shape == v.shape and v.is_floating_point():
            result[k] = trained[kk].detach().to(v.dtype).contiguous()
        else:
            result[k] = v.contiguous()
    from safetensors.torch import save_file

    tmp = out + ".tmp"
    save_file(result, tmp, metadata={"format": "pt"})
    os.replace(tmp, out)
    return {"steps": steps, "mode": mode, "lr": lr, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m didmark.finetune", description=__doc__.splitlines()[0])
    ap.add_argument("input", help="safetensors checkpoint with config.json beside it")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--mode", choices=["full", "lora"], default="full")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"the fine-tuning attack needs torch and transformers: {e}", file=sys.stderr)
        return 2
    r = finetune(a.input, a.output, a.steps, a.mode, a.lr, a.seed, a.rank)
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
