"""Convolution channels through the CLI, checked with PyTorch's own convolution.

A ResNet-18 (torchvision's tensor names and shapes, random weights) written as safetensors is
marked with `embed --sketch`; `didmark attack --attack permute:channels` permutes every channel
dimension (residual streams, inner block channels, batch-norm statistics) and `rescale-channels`
scales and flips each channel's rows, folded into its batch norm. torch's conv2d and batch_norm,
in eval mode, give the same logits before and after, so the attacks are free for a thief; the
plain test then fails and `verify --sketch` detects the owner again.
"""
import json
import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import save_file

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture(scope="module")
def alice(tmp_path_factory, cli):
    path = tmp_path_factory.mktemp("owner") / "alice.id.json"
    subprocess.run([cli, "id", "new", "-o", str(path)], check=True, capture_output=True)
    return str(path)


def resnet18(seed=0, widths=(64, 128, 256, 512), classes=100):
    rng = np.random.default_rng(seed)
    t = {}

    def conv(name, o, i, k):
        t[name] = (rng.standard_normal((o, i, k, k)) * np.sqrt(2.0 / (i * k * k))).astype(np.float32)

    def bn(name, n):
        t[name + ".weight"] = (1 + 0.2 * rng.standard_normal(n)).astype(np.float32)
        t[name + ".bias"] = (0.1 * rng.standard_normal(n)).astype(np.float32)
        t[name + ".running_mean"] = (0.2 * rng.standard_normal(n)).astype(np.float32)
        t[name + ".running_var"] = (np.abs(1 + 0.3 * rng.standard_normal(n)) + 0.05).astype(np.float32)
        t[name + ".num_batches_tracked"] = np.array(100, dtype=np.int64)

    conv("conv1.weight", widths[0], 3, 7)
    bn("bn1", widths[0])
    cin = widths[0]
    for s, w in enumerate(widths):
        for b in range(2):
            p = f"layer{s + 1}.{b}."
            conv(p + "conv1.weight", w, cin, 3)
            bn(p + "bn1", w)
            conv(p + "conv2.weight", w, w, 3)
            bn(p + "bn2", w)
            if b == 0 and s > 0:
                conv(p + "downsample.0.weight", w, cin, 1)
                bn(p + "downsample.1", w)
            cin = w
    t["fc.weight"] = (rng.standard_normal((classes, cin)) / np.sqrt(cin)).astype(np.float32)
    t["fc.bias"] = (0.05 * rng.standard_normal(classes)).astype(np.float32)
    return t


def forward(path, x):
    """torchvision's ResNet-18 forward in eval mode, from the file's tensors."""
    from safetensors.torch import load_file

    w = load_file(path)

    def bn(y, p):
        return F.batch_norm(y, w[p + ".running_mean"], w[p + ".running_var"], w[p + ".weight"], w[p + ".bias"],
                            training=False, eps=1e-5)

    y = F.relu(bn(F.conv2d(x, w["conv1.weight"], stride=2, padding=3), "bn1"))
    y = F.max_pool2d(y, 3, stride=2, padding=1)
    for s in range(4):
        for b in range(2):
            p = f"layer{s + 1}.{b}."
            stride = 2 if b == 0 and s > 0 else 1
            h = F.relu(bn(F.conv2d(y, w[p + "conv1.weight"], stride=stride, padding=1), p + "bn1"))
            h = bn(F.conv2d(h, w[p + "conv2.weight"], padding=1), p + "bn2")
            idn = y
            if p + "downsample.0.weight" in w:
                idn = bn(F.conv2d(y, w[p + "downsample.0.weight"], stride=stride), p + "downsample.1")
            y = F.relu(h + idn)
    y = y.mean(dim=(2, 3))
    return F.linear(y, w["fc.weight"], w["fc.bias"])


def test_permuted_resnet_is_the_same_network_and_the_sketch_finds_its_owner(run, tmp_path, alice):
    src = str(tmp_path / "resnet18.safetensors")
    save_file(resnet18(), src)
    marked, sketch = str(tmp_path / "marked.safetensors"), str(tmp_path / "marked.sketch")
    e = json.loads(run("--json", "embed", src, "-o", marked, "--id", alice, "--sketch", sketch).stdout)
    assert e["sketch"]["architecture"] == "resnet" and e["sketch"]["fraction"] <= 0.01

    stolen = str(tmp_path / "stolen.safetensors")
    a = json.loads(run("--json", "attack", marked, "-o", stolen, "--attack", "permute:channels",
                       "--attack", "rescale-channels", "--attack", "quant:int8").stdout)
    assert a["attacks"][0]["function_preserving"] and a["attacks"][1]["function_preserving"]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    moved = str(tmp_path / "moved.safetensors")
    run("attack", marked, "-o", moved, "--attack", "permute:channels", "--attack", "rescale-channels")
    before, after = forward(marked, x), forward(moved, x)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4 * before.abs().max().item())
    # Nothing is exact by accident: swapping two channels of one convolution alone changes it.
    from safetensors.torch import load_file as load_torch, save_file as save_torch
    broken = load_torch(marked)
    broken["layer3.0.conv1.weight"][[0, 1]] = broken["layer3.0.conv1.weight"][[1, 0]]
    save_torch(broken, str(tmp_path / "broken.safetensors"))
    assert not torch.allclose(before, forward(str(tmp_path / "broken.safetensors"), x), rtol=1e-3, atol=1e-3)
    from safetensors.numpy import load_file
    m0, m1 = load_file(marked), load_file(moved)
    changed = [k for k in m0 if m0[k].ndim and not np.array_equal(m0[k], m1[k])]
    assert len(changed) >= 3 * len(m0) // 4  # every convolution and batch norm moved

    plain = run("--json", "verify", stolen, "--id", alice, check=False)
    assert plain.returncode == 1
    r = json.loads(run("--json", "verify", stolen, "--id", alice, "--sketch", sketch).stdout)["verdicts"][0]
    assert r["detected"] and r["realigned"] and r["log10_p"] <= -9
    assert r["alignment"]["rows_moved"] > 0 and r["alignment"]["sign_flips"] > 0 and r["alignment"]["rescaled"]
