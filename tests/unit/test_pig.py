"""Tests of the Gaussian embedding and the Physics-Informed Gaussians model (Kang et al., ICLR 2025)."""

from __future__ import annotations

import math

import pytest
import torch

from neurop.layers.gaussian import GaussianEmbedding
from neurop.layers.jet import autograd_jet
from neurop.models import MODELS
from neurop.models.pig import PIG

torch.set_num_threads(1)
F64 = torch.float64


def _embedding(covariance: str, chunk_size: int = 4096, n: int = 6, d: int = 2) -> GaussianEmbedding:
    torch.manual_seed(0)
    emb = GaussianEmbedding(d, n, 3, sigma0=0.4, covariance=covariance, chunk_size=chunk_size).double()
    if covariance == "full":
        with torch.no_grad():
            emb.lower.normal_(0, 0.5)  # a genuinely non-diagonal precision factor
    return emb


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_embedding_matches_its_definition(covariance: str) -> None:
    emb = _embedding(covariance)
    x = torch.rand(9, 2, dtype=F64) * 2 - 1
    p = emb.precision_factor()
    prec = p @ p.transpose(1, 2)  # Σ⁻¹, (N, d, d)
    diff = x[:, None] - emb.means[None]
    quad = torch.einsum("ngi,gij,ngj->ng", diff, prec, diff)
    expected = torch.exp(-0.5 * quad) @ emb.features
    torch.testing.assert_close(emb(x), expected, rtol=1e-12, atol=1e-14)
    # scales() are sqrt(diag Σ)
    torch.testing.assert_close(emb.scales(), torch.linalg.inv(prec).diagonal(dim1=1, dim2=2).sqrt())


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_embedding_jet_matches_nested_autograd(covariance: str) -> None:
    emb = _embedding(covariance, d=3)
    x = torch.rand(11, 3, dtype=F64) * 2 - 1
    fast, slow = emb.jet(x, (0, 2)), autograd_jet(emb, x, (0, 2))
    for a, b in ((fast.u, slow.u), (fast.du, slow.du), (fast.d2u, slow.d2u)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_parameter_gradients_match_finite_differences(covariance: str) -> None:
    # The physics loss differentiates the jet (values, first and second derivatives) w.r.t. the means,
    # scales and features: check those gradients against central finite differences.
    emb = _embedding(covariance, n=4)
    x = torch.rand(5, 2, dtype=F64) * 2 - 1
    names = ["means", "features"] + (["log_scales"] if covariance == "diagonal" else ["log_diag", "lower"])
    params = [getattr(emb, n) for n in names]

    class JetOf(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = emb

        def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
            j = self.emb.jet(z, (0, 1))
            return self.emb(z), j.u, j.du, j.d2u

    wrapper = JetOf()

    def fn(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.func.functional_call(
            wrapper, {f"emb.{n}": v for n, v in zip(names, values, strict=True)}, (x,)
        )

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_chunked_evaluation_equals_unchunked(covariance: str) -> None:
    whole = _embedding(covariance, chunk_size=4096, n=7)
    chunked = _embedding(covariance, chunk_size=4, n=7)  # 23 points: 6 chunks, the last one partial
    x = torch.rand(23, 2, dtype=F64) * 2 - 1
    torch.testing.assert_close(chunked(x), whole(x), rtol=0, atol=1e-14)
    jw, jc = whole.jet(x, (0, 1)), chunked.jet(x, (0, 1))
    for a, b in ((jw.u, jc.u), (jw.du, jc.du), (jw.d2u, jc.d2u)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
    # gradients through the recomputed (checkpointed) chunks agree too
    for j in (jw, jc):
        (j.u.square().sum() + j.du.square().sum() + j.d2u.square().sum()).backward()
    for (n, pw), (_, pc) in zip(whole.named_parameters(), chunked.named_parameters(), strict=True):
        torch.testing.assert_close(pc.grad, pw.grad, rtol=1e-10, atol=1e-12, msg=n)


@pytest.mark.parametrize("second_axes", [(0, 1), (1,), ()])
def test_fused_diagonal_jet_equals_the_generic_path(second_axes: tuple[int, ...]) -> None:
    # The diagonal-covariance jet runs a hand-differentiated kernel block by block (3 blocks here, the
    # last one partial); values and gradients w.r.t. the points and every parameter equal autograd
    # through the generic (n, N, d) expression.
    fused = _embedding("diagonal", chunk_size=4, n=7)
    generic = _embedding("diagonal", chunk_size=4, n=7)
    generic.fused_jet = False
    with torch.no_grad():
        fused.log_scales.uniform_(-1.5, -0.5)  # unequal scales per Gaussian and axis
    generic.load_state_dict(fused.state_dict())
    assert fused.fused_block() == 4
    big = _embedding("diagonal", chunk_size=4096, n=2000)
    assert big.fused_block(torch.device("cpu")) == 128  # 2**18 pairs: cache-sized on a CPU
    assert big.fused_block(torch.device("meta")) == 4096  # elsewhere whole chunks (fewer kernel launches)
    x0 = torch.rand(10, 2, dtype=F64) * 2 - 1
    weights = [torch.randn(10, 3, dtype=F64), torch.randn(10, 2, 3, dtype=F64),
               torch.randn(10, len(second_axes), 3, dtype=F64)]  # fmt: skip
    grads = []
    for emb in (fused, generic):
        x = x0.clone().requires_grad_(True)
        j = emb.jet(x, second_axes)
        loss = sum((w * t).sum() for w, t in zip(weights, (j.u, j.du, j.d2u), strict=True))
        loss.backward()
        grads.append([j.u, j.du, j.d2u, x.grad] + [p.grad for p in emb.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def test_far_gaussians_underflow_to_the_definition() -> None:
    # σ = 0.01: almost every point-Gaussian pair is beyond exp's underflow, where the exponent is
    # clamped (a fast path for the CPU's exp); values and derivatives still match the exact definition.
    emb = _embedding("diagonal", n=50)
    with torch.no_grad():
        emb.log_scales.fill_(math.log(0.01))
    x = torch.rand(40, 2, dtype=F64) * 2 - 1
    x[:5] = emb.means[:5].detach() + 0.01  # a few points near a mean
    diff = x[:, None] - emb.means[None]
    g = torch.exp(-0.5 * (diff / 0.01).square().sum(-1))
    assert (g == 0).float().mean() > 0.9
    torch.testing.assert_close(emb.jet(x, (0, 1)).u, g @ emb.features, rtol=1e-12, atol=1e-200)
    for dtype in (torch.float32, F64):
        slow = autograd_jet(emb.to(dtype), x.to(dtype), (0, 1))
        fast = emb.jet(x.to(dtype), (0, 1))
        for a, b in ((fast.u, slow.u), (fast.du, slow.du), (fast.d2u, slow.d2u)):
            # up to the dtype's rounding, relative to the field's scale (d²u ~ 1/σ² = 1e4 here)
            tol = (1e-5 if dtype == torch.float32 else 1e-12) * b.abs().max().item()
            torch.testing.assert_close(a, b, rtol=0, atol=tol)


def test_pig_model_jet_and_forward_agree_with_autograd() -> None:
    torch.manual_seed(0)
    net = PIG(2, 2, n_gaussians=10, feature_channels=3, hidden_channels=5, n_layers=2, sigma0=0.3,
              bounds=[[0, 1], [-1, 1]], chunk_size=4).double()  # fmt: skip
    x = torch.rand(9, 2, dtype=F64)
    fast, slow = net.jet(x, (0, 1)), autograd_jet(net, x, (0, 1))
    for a, b in ((fast.u, slow.u), (fast.du, slow.du), (fast.d2u, slow.d2u)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert net(x).shape == (9, 2)
    # means start inside the box
    m = net.embedding.means
    assert (m[:, 0] >= 0).all() and (m[:, 0] <= 1).all() and (m[:, 1] >= -1).all()


def test_pig_is_registered_and_fits_a_function() -> None:
    # A quick regression with the jet's first derivative: learning the means helps fit a bump.
    assert MODELS.get("pig") is PIG
    torch.manual_seed(0)
    net = PIG(1, 1, n_gaussians=20, sigma0=0.2)
    x = torch.linspace(-1, 1, 200)[:, None]
    y = torch.exp(-50 * (x - 0.3) ** 2)
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    first = None
    for _ in range(300):
        loss = (net(x) - y).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-2 * first


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_gaussians": 0}, "n_gaussians must be > 0, got 0"),
        ({"n_gaussians": -5}, "n_gaussians must be > 0, got -5"),
        ({"sigma0": 0.0}, "sigma0 must be > 0, got 0.0"),
        ({"sigma0": -0.1}, "sigma0 must be > 0, got -0.1"),
        ({"feature_channels": 0}, "feature_channels must be > 0, got 0"),
        ({"chunk_size": 0}, "chunk_size must be > 0, got 0"),
        ({"covariance": "spherical"}, "covariance must be one of .* got 'spherical'"),
        ({"layout": "split"}, "layout must be one of .* got 'split'"),
        ({"activation": "relu"}, "activation must be one of .* got 'relu'"),
        ({"hidden_channels": 0}, "hidden_channels must be an integer >= 1, got 0"),
        ({"bounds": [[1, 0], [0, 1]]}, "bounds must be 2 pairs"),
    ],
)
def test_pig_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PIG(2, **kwargs)


@pytest.mark.parametrize("fused", [True, False])
def test_per_channel_layout_is_k_independent_scalar_embeddings(fused: bool) -> None:
    # layout="per_channel" (the PIG authors' layout): channel c is Σ_i w_ci g_ci(x) over its own N Gaussians.
    # Its jet and every parameter gradient equal those of k separate one-channel embeddings.
    torch.manual_seed(0)
    n, k = 5, 3
    emb = GaussianEmbedding(2, n, k, sigma0=0.4, layout="per_channel").double()
    emb.fused_jet = fused
    with torch.no_grad():
        emb.log_scales.uniform_(-1.5, -0.5)
    assert emb.features.shape == (k * n,) and emb.means.shape == (k * n, 2)
    parts = []
    for c in range(k):
        part = GaussianEmbedding(2, n, 1, sigma0=0.4).double()
        sl = slice(c * n, (c + 1) * n)
        with torch.no_grad():
            part.means.copy_(emb.means[sl])
            part.log_scales.copy_(emb.log_scales[sl])
            part.features.copy_(emb.features[sl, None])
        parts.append(part)
    x = torch.rand(9, 2, dtype=F64) * 2 - 1
    weights = [torch.randn(9, k, dtype=F64), torch.randn(9, 2, k, dtype=F64), torch.randn(9, 2, k, dtype=F64)]
    j = emb.jet(x, (0, 1))
    sum((w * t).sum() for w, t in zip(weights, (j.u, j.du, j.d2u), strict=True)).backward()
    for c, part in enumerate(parts):
        jc = part.jet(x, (0, 1))
        for got, want in zip((j.u, j.du, j.d2u), (jc.u, jc.du, jc.d2u), strict=True):
            torch.testing.assert_close(got[..., c : c + 1], want, rtol=1e-12, atol=1e-14)
        loss = sum((w[..., c : c + 1] * t).sum() for w, t in zip(weights, (jc.u, jc.du, jc.d2u), strict=True))
        loss.backward()
        sl = slice(c * n, (c + 1) * n)
        torch.testing.assert_close(emb.means.grad[sl], part.means.grad, rtol=1e-11, atol=1e-13)
        torch.testing.assert_close(emb.log_scales.grad[sl], part.log_scales.grad, rtol=1e-11, atol=1e-13)
        torch.testing.assert_close(emb.features.grad[sl], part.features.grad[:, 0], rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(emb(x), j.u)


def test_pig_with_per_channel_gaussians_round_trips_its_state() -> None:
    net = PIG(2, n_gaussians=4, feature_channels=3, layout="per_channel")
    assert "layout='per_channel'" in repr(net)
    state = net.state_dict()
    assert state["embedding.features"].shape == (12,) and "embedding._one_hot" not in state
    copy = PIG(2, n_gaussians=4, feature_channels=3, layout="per_channel")
    copy.load_state_dict(state)
    x = torch.rand(6, 2)
    torch.testing.assert_close(copy(x), net(x))
