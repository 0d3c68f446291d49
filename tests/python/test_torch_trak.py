"""didmark.trak on a torch model: per-example gradients by torch.func, the engine's keyed
projection, scores streamed to a memory-mapped .npy. Checked on a linear model against the
closed form, for determinism, and for independence from tile sizes."""
import numpy as np
import pytest

didmark = pytest.importorskip("didmark", reason="the didmark Python module is not built (DIDMARK_PYTHON)")
torch = pytest.importorskip("torch", reason="PyTorch is not installed (scripts/setup.sh installs it)")


def sq_loss(out, y):
    return 0.5 * ((out.squeeze(-1) - y) ** 2).sum()


def linear_problem(n=300, m=40, p=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, xq = torch.randn(n, p, generator=g, dtype=torch.float64), torch.randn(m, p, generator=g, dtype=torch.float64)
    w_true = torch.randn(p, generator=g, dtype=torch.float64)
    y = x @ w_true + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    yq = xq @ w_true + 0.3 * torch.randn(m, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(p, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, p, generator=g, dtype=torch.float64) * 0.5)
    return model, (x, y), (xq, yq)


def closed_form(model, train, test, r, lam_ridge):
    """S = Psi (Phi^T Phi + lambda I)^-1 Phi^T with g_i = (w.x_i - y_i) x_i, Phi = G R."""
    w = model.weight.detach().numpy()[0]
    (x, y), (xq, yq) = [(a.numpy(), b.numpy()) for a, b in (train, test)]
    gtr = (x @ w - y)[:, None] * x
    gte = (xq @ w - yq)[:, None] * xq
    phi, psi = gtr @ r, gte @ r
    kern = phi.T @ phi
    lam = lam_ridge * np.trace(kern) / r.shape[1]
    return psi @ np.linalg.solve(kern + lam * np.eye(r.shape[1]), phi.T), gtr, gte


@pytest.mark.parametrize("k", [8, 64])
def test_linear_model_matches_the_closed_form(tmp_path, k):
    model, train, test = linear_problem()
    rep = didmark.trak(model, sq_loss, train, test, proj_dim=k, seed=5, batch_size=37, scores=tmp_path / "s.npy")
    s = np.load(rep["scores"], mmap_mode="r")
    assert s.shape == (40, 300) and s.dtype == np.float32
    r = didmark.rademacher_rows(k, 5, 0, 24).astype(np.float64)
    want, gtr, gte = closed_form(model, train, test, r, 1e-6)
    assert np.allclose(s, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    assert np.allclose(rep["values"], want.mean(axis=0), rtol=1e-3, atol=1e-3 * np.abs(want).max())
    if k >= 24:
        # R has full row rank: the projection cancels, and S is the regression influence
        # Gq (G^T G)^-1 G^T, with no R in it at all.
        exact = gte @ np.linalg.solve(gtr.T @ gtr, gtr.T)
        assert np.allclose(s, exact, rtol=5e-3, atol=5e-3 * np.abs(exact).max())


def test_deterministic_and_independent_of_tiles(tmp_path):
    model, train, test = linear_problem(n=500, m=30, p=40, seed=2)
    runs = []
    for i, (bs, qt, tt) in enumerate([(64, 1024, 8192), (64, 1024, 8192), (7, 4, 33)]):
        rep = didmark.trak(model, sq_loss, train, test, proj_dim=32, seed=1, batch_size=bs, query_tile=qt,
                           train_tile=tt, scores=tmp_path / f"s{i}.npy")
        runs.append((rep, (tmp_path / f"s{i}.npy").read_bytes()))
    assert runs[0][1] == runs[1][1]  # the same bytes, run to run
    assert np.array_equal(runs[0][0]["values"], runs[1][0]["values"])
    a, b = np.load(tmp_path / "s0.npy"), np.load(tmp_path / "s2.npy")
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def test_dataloader_contributors_and_a_network(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(120, 10), torch.randint(0, 3, (120,))
    xq, yq = torch.randn(9, 10), torch.randint(0, 3, (9,))
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=25)
    owners = np.repeat(np.arange(4), 30)
    rep = didmark.trak(net, torch.nn.functional.cross_entropy, loader, (xq, yq), proj_dim=64,
                       contributors=owners, scores=tmp_path / "s.npy")
    assert rep["train"] == 120 and rep["queries"] == 9 and rep["params"] == 10 * 16 + 16 + 16 * 3 + 3
    assert set(rep["contributors"]) == {0, 1, 2, 3}
    assert sum(rep["contributors"].values()) == pytest.approx(rep["values"].sum())
    s = np.load(tmp_path / "s.npy")
    assert np.allclose(s.mean(axis=0), rep["values"], atol=1e-5 * max(1, np.abs(s).max()))
    # The same as the engine's trak on the gradients held in memory.
    with pytest.raises(didmark.Error, match="exists"):
        didmark.trak(net, torch.nn.functional.cross_entropy, loader, (xq, yq), proj_dim=64, scores=tmp_path / "s.npy")


def test_engine_trak_on_gradients_agrees(tmp_path):
    # didmark.trak_arrays runs the C++ trak on gradients in memory; didmark.trak on a linear
    # model gives the same scores from the model.
    model, train, test = linear_problem(n=200, m=15, p=30, seed=4)
    w = model.weight.detach().numpy()[0]
    (x, y), (xq, yq) = [(a.numpy(), b.numpy()) for a, b in (train, test)]
    gtr = ((x @ w - y)[:, None] * x).astype(np.float32)
    gte = ((xq @ w - yq)[:, None] * xq).astype(np.float32)
    eng = didmark.trak_arrays(gtr, gte, k=16, seed=3, scores=tmp_path / "e.npy")
    py = didmark.trak(model, sq_loss, train, test, proj_dim=16, seed=3, scores=tmp_path / "p.npy")
    a, b = np.load(tmp_path / "e.npy"), np.load(tmp_path / "p.npy")
    assert np.allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(a).max())
    assert np.allclose(eng["values"], py["values"], rtol=1e-3, atol=1e-3 * np.abs(eng["values"]).max())
