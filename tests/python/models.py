"""Small transformer checkpoints with real names, and numpy forward passes to check them.

Three families, each written as a safetensors file (with the Hugging Face config.json the
real models ship beside it) and run by a float64 numpy forward pass:

* BERT (post-LN encoder, GELU or ReLU MLP, learned positions, pooler):
  ``embeddings.word_embeddings.weight``, ``encoder.layer.N.attention.self.query.weight``, ...
* GPT-2 (pre-LN decoder, Conv1D weights stored [in, out], fused q|k|v, tied output):
  ``wte.weight``, ``h.N.attn.c_attn.weight``, ``h.N.mlp.c_fc.weight``, ...
* Llama (RMSNorm, SwiGLU MLP, grouped-query attention, rotary positions, lm_head):
  ``model.embed_tokens.weight``, ``model.layers.N.self_attn.q_proj.weight``, ...

A structural attack is function-preserving when the forward pass of the attacked file gives
the same outputs: logits for GPT-2 and Llama, and for BERT the hidden states up to one fixed
permutation of the embedding dimension (``match_columns``) and the pooler output exactly.

Used by tests/python/test_attack_cli.py and by scripts/robustness-report.sh; numpy and
safetensors only.
"""
import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file

# ---- generators ------------------------------------------------------------------------------


def _w(rng, *shape, std=0.02):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _norm(rng, n):
    return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)


def bert_tensors(hidden=64, layers=2, heads=4, ffn=128, vocab=97, max_pos=32, seed=0, prefix=""):
    rng = np.random.default_rng(seed)
    t = {
        "embeddings.word_embeddings.weight": _w(rng, vocab, hidden, std=0.5),
        "embeddings.position_embeddings.weight": _w(rng, max_pos, hidden, std=0.2),
        "embeddings.token_type_embeddings.weight": _w(rng, 2, hidden, std=0.2),
        "embeddings.LayerNorm.weight": _norm(rng, hidden),
        "embeddings.LayerNorm.bias": _w(rng, hidden),
        "embeddings.position_ids": np.arange(max_pos, dtype=np.int64)[None, :],
        "pooler.dense.weight": _w(rng, hidden, hidden, std=0.1),
        "pooler.dense.bias": _w(rng, hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            t[p + f"attention.self.{n}.weight"] = _w(rng, hidden, hidden, std=0.15)
            t[p + f"attention.self.{n}.bias"] = _w(rng, hidden)
        t[p + "attention.output.dense.weight"] = _w(rng, hidden, hidden, std=0.1)
        t[p + "attention.output.dense.bias"] = _w(rng, hidden)
        t[p + "attention.output.LayerNorm.weight"] = _norm(rng, hidden)
        t[p + "attention.output.LayerNorm.bias"] = _w(rng, hidden)
        t[p + "intermediate.dense.weight"] = _w(rng, ffn, hidden, std=0.15)
        t[p + "intermediate.dense.bias"] = _w(rng, ffn)
        t[p + "output.dense.weight"] = _w(rng, hidden, ffn, std=0.1)
        t[p + "output.dense.bias"] = _w(rng, hidden)
        t[p + "output.LayerNorm.weight"] = _norm(rng, hidden)
        t[p + "output.LayerNorm.bias"] = _w(rng, hidden)
    return {prefix + k: v for k, v in t.items()}


def gpt2_tensors(hidden=64, layers=2, heads=4, ffn=256, vocab=97, max_pos=32, seed=0, prefix=""):
    rng = np.random.default_rng(seed)
    t = {"wte.weight": _w(rng, vocab, hidden, std=0.5), "wpe.weight": _w(rng, max_pos, hidden, std=0.2)}
    for i in range(layers):
        p = f"h.{i}."
        t[p + "ln_1.weight"] = _norm(rng, hidden)
        t[p + "ln_1.bias"] = _w(rng, hidden)
        t[p + "attn.c_attn.weight"] = _w(rng, hidden, 3 * hidden, std=0.15)
        t[p + "attn.c_attn.bias"] = _w(rng, 3 * hidden)
        t[p + "attn.c_proj.weight"] = _w(rng, hidden, hidden, std=0.1)
        t[p + "attn.c_proj.bias"] = _w(rng, hidden)
        t[p + "ln_2.weight"] = _norm(rng, hidden)
        t[p + "ln_2.bias"] = _w(rng, hidden)
        t[p + "mlp.c_fc.weight"] = _w(rng, hidden, ffn, std=0.15)
        t[p + "mlp.c_fc.bias"] = _w(rng, ffn)
        t[p + "mlp.c_proj.weight"] = _w(rng, ffn, hidden, std=0.1)
        t[p + "mlp.c_proj.bias"] = _w(rng, hidden)
    t["ln_f.weight"] = _norm(rng, hidden)
    t["ln_f.bias"] = _w(rng, hidden)
    return {prefix + k: v for k, v in t.items()}


def llama_tensors(hidden=64, layers=2, heads=4, kv_heads=2, ffn=160, vocab=97, seed=0, prefix="", bias=False):
    rng = np.random.default_rng(seed)
    hd = hidden // heads
    t = {"model.embed_tokens.weight": _w(rng, vocab, hidden, std=0.5)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = _norm(rng, hidden)
        t[p + "self_attn.q_proj.weight"] = _w(rng, heads * hd, hidden, std=0.15)
        t[p + "self_attn.k_proj.weight"] = _w(rng, kv_heads * hd, hidden, std=0.15)
        t[p + "self_attn.v_proj.weight"] = _w(rng, kv_heads * hd, hidden, std=0.15)
        if bias:  # Qwen2-style q/k/v biases
            t[p + "self_attn.q_proj.bias"] = _w(rng, heads * hd)
            t[p + "self_attn.k_proj.bias"] = _w(rng, kv_heads * hd)
            t[p + "self_attn.v_proj.bias"] = _w(rng, kv_heads * hd)
        t[p + "self_attn.o_proj.weight"] = _w(rng, hidden, heads * hd, std=0.1)
        t[p + "post_attention_layernorm.weight"] = _norm(rng, hidden)
        t[p + "mlp.gate_proj.weight"] = _w(rng, ffn, hidden, std=0.15)
        t[p + "mlp.up_proj.weight"] = _w(rng, ffn, hidden, std=0.15)
        t[p + "mlp.down_proj.weight"] = _w(rng, hidden, ffn, std=0.1)
    t["model.norm.weight"] = _norm(rng, hidden)
    t["lm_head.weight"] = _w(rng, vocab, hidden, std=0.3)
    return {prefix + k: v for k, v in t.items()}


def config_for(family, heads, kv_heads=None, act=None):
    if family == "bert":
        return {"model_type": "bert", "num_attention_heads": heads, "hidden_act": act or "gelu"}
    if family == "gpt2":
        return {"model_type": "gpt2", "n_head": heads, "activation_function": act or "gelu_new"}
    return {"model_type": "llama", "num_attention_heads": heads, "num_key_value_heads": kv_heads or heads,
            "hidden_act": "silu"}


def write_model(folder, family, name="model.safetensors", act=None, config=True, **kw):
    """Write a model of `family` ("bert", "gpt2", "llama") and its config.json into `folder`;
    returns (path, tensors, config)."""
    make = {"bert": bert_tensors, "gpt2": gpt2_tensors, "llama": llama_tensors}[family]
    t = make(**kw)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    save_file(t, path, metadata={"format": "pt"})
    heads = kw.get("heads", 4)
    cfg = config_for(family, heads, kw.get("kv_heads", 2 if family == "llama" else None), act)
    if family == "bert":  # the sizes too, so that transformers can build the model (fine-tuning)
        hidden = kw.get("hidden", 64)
        cfg.update(hidden_size=hidden, num_hidden_layers=kw.get("layers", 2), intermediate_size=kw.get("ffn", 128),
                   vocab_size=kw.get("vocab", 97), max_position_embeddings=kw.get("max_pos", 32), type_vocab_size=2,
                   layer_norm_eps=1e-12, architectures=["BertModel"])
    if config:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f)
    return path, t, cfg


def sizes_for(family, params):
    """(hidden, layers, ffn, vocab) of a model of at least `params` parameters."""
    hidden, vocab = 512, 8000
    per_layer = {"bert": 4 * hidden * hidden + 2 * hidden * 4 * hidden,
                 "gpt2": 4 * hidden * hidden + 2 * hidden * 4 * hidden,
                 "llama": 3 * hidden * hidden + 3 * hidden * 2 * hidden}[family]
    emb = vocab * hidden * (2 if family == "llama" else 1)
    layers = max(1, -(-(params - emb) // per_layer))
    ffn = 4 * hidden if family != "llama" else 2 * hidden
    return hidden, int(layers), ffn, vocab


# ---- forward passes --------------------------------------------------------------------------


def load(path):
    """Tensors of a safetensors file as float64 (integers kept)."""
    return {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in load_file(path).items()}


def _strip(w, prefix):
    return {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}


def _ln(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _rms(x, g, eps=1e-6):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _softmax(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def _attend(q, k, v, heads, kv_heads, causal):
    t = q.shape[0]
    hd = q.shape[1] // heads
    q = q.reshape(t, heads, hd).transpose(1, 0, 2)
    k = k.reshape(t, kv_heads, hd).transpose(1, 0, 2)
    v = v.reshape(t, kv_heads, hd).transpose(1, 0, 2)
    rep = heads // kv_heads
    k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
    if causal:
        s = s + np.triu(np.full((t, t), -1e9), 1)
    return (_softmax(s) @ v).transpose(1, 0, 2).reshape(t, heads * hd)


def _layers(w, pattern):
    n = 0
    while any(k.startswith(pattern.format(n)) for k in w):
        n += 1
    return n


def bert_forward(w, ids, heads, act="gelu", prefix=""):
    """(hidden states [T, H], pooler output [H]) of a BERT encoder."""
    w = _strip(w, prefix)
    f = gelu if act.startswith("gelu") else (lambda x: np.maximum(x, 0))
    t = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for i in range(_layers(w, "encoder.layer.{}.")):
        p = f"encoder.layer.{i}."
        lin = lambda n, h: h @ w[p + n + ".weight"].T + w[p + n + ".bias"]  # noqa: E731
        a = _attend(lin("attention.self.query", x), lin("attention.self.key", x), lin("attention.self.value", x),
                    heads, heads, causal=False)
        x = _ln(x + lin("attention.output.dense", a), w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"])
        h = f(lin("intermediate.dense", x))
        x = _ln(x + lin("output.dense", h), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    pooled = np.tanh(x[0] @ w["pooler.dense.weight"].T + w["pooler.dense.bias"])
    return x, pooled


def gpt2_forward(w, ids, heads, prefix=""):
    """Logits [T, vocab] of a GPT-2 decoder (output tied to wte)."""
    w = _strip(w, prefix)
    t = len(ids)
    x = w["wte.weight"][ids] + w["wpe.weight"][:t]
    for i in range(_layers(w, "h.{}.")):
        p = f"h.{i}."
        h = _ln(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = np.split(qkv, 3, axis=1)
        x = x + _attend(q, k, v, heads, heads, causal=True) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = _ln(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
        x = x + gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] \
            + w[p + "mlp.c_proj.bias"]
    x = _ln(x, w["ln_f.weight"], w["ln_f.bias"], 1e-5)
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["wte.weight"]
    return x @ head.T


def _rope(x, heads, theta=10000.0):
    t = x.shape[0]
    hd = x.shape[1] // heads
    inv = theta ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(t)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, axis=1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, axis=1)[:, None, :]
    x = x.reshape(t, heads, hd)
    rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], axis=-1)
    return (x * cos + rot * sin).reshape(t, heads * hd)


def llama_forward(w, ids, heads, kv_heads, prefix=""):
    """Logits [T, vocab] of a Llama decoder (RMSNorm, rotary, GQA, SwiGLU)."""
    w = _strip(w, prefix)
    x = w["model.embed_tokens.weight"][ids]
    silu = lambda z: z / (1 + np.exp(-z))  # noqa: E731
    for i in range(_layers(w, "model.layers.{}.")):
        p = f"model.layers.{i}."

        def proj(n, h):
            y = h @ w[p + n + ".weight"].T
            return y + w[p + n + ".bias"] if p + n + ".bias" in w else y

        h = _rms(x, w[p + "input_layernorm.weight"])
        q = _rope(proj("self_attn.q_proj", h), heads)
        k = _rope(proj("self_attn.k_proj", h), kv_heads)
        v = proj("self_attn.v_proj", h)
        x = x + _attend(q, k, v, heads, kv_heads, causal=True) @ w[p + "self_attn.o_proj.weight"].T
        h = _rms(x, w[p + "post_attention_layernorm.weight"])
        x = x + (silu(proj("mlp.gate_proj", h)) * proj("mlp.up_proj", h)) @ w[p + "mlp.down_proj.weight"].T
    x = _rms(x, w["model.norm.weight"])
    return x @ w["lm_head.weight"].T


def forward(family, path, cfg, ids, prefix=""):
    """The outputs a structural attack must keep: a tuple of arrays."""
    w = load(path)
    if family == "bert":
        return bert_forward(w, ids, cfg["num_attention_heads"], cfg.get("hidden_act", "gelu"), prefix)
    if family == "gpt2":
        return (gpt2_forward(w, ids, cfg["n_head"], prefix),)
    return (llama_forward(w, ids, cfg["num_attention_heads"], cfg["num_key_value_heads"], prefix),)


def match_columns(a, b):
    """The permutation p with b[:, p] closest to a, and the largest |a - b[:, p]|: columns are
    matched to their nearest counterpart, so a bijection with a tiny error shows that b is a
    copy of a with its columns permuted."""
    d = ((a[:, :, None] - b[:, None, :]) ** 2).sum(0)
    p = d.argmin(1)
    return p, float(np.abs(a - b[:, p]).max())


def same_function(family, before, after, tol=1e-4):
    """(ok, detail): do two forward outputs agree (BERT: up to a permutation of the hidden dim)?"""
    if family == "bert":
        (h0, p0), (h1, p1) = before, after
        if h0.shape != h1.shape:
            return False, f"hidden states {h0.shape} vs {h1.shape}"
        perm, err = match_columns(h0, h1)
        bij = len(set(perm.tolist())) == len(perm)
        perr = float(np.abs(p0 - p1).max())
        return bij and err < tol and perr < tol, f"bijection {bij}, hidden err {err:.2e}, pooler err {perr:.2e}"
    err = float(np.abs(before[0] - after[0]).max())
    return err < tol, f"logit err {err:.2e}"
