"""Physics-Informed Gaussians (PIG): trainable Gaussian features, then a small MLP (Kang et al., ICLR 2025).

``u(x) = MLP(FE(x))`` with ``FE(x) = Σ_i f_i exp(−½ (x − μ_i)ᵀ Σ_i⁻¹ (x − μ_i))``; the Gaussians' means,
covariances and features are trained with the network by the usual physics-informed loss. The paper's
typical set-up: k = 4 feature channels, N = 800–4000 Gaussians, MLP 4 → 16 → tanh → 1, σ0 = 0.1.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from neurop.layers.gaussian import Covariance, FeatureLayout, GaussianEmbedding
from neurop.layers.jet import JET_ACTIVATIONS, Jet, JetActivation, jet_activation, jet_linear
from neurop.models import MODELS
from neurop.models.pinn import _PLAIN, check_bounds


@MODELS.register("pig")
class PIG(nn.Module):
    """Physics-Informed Gaussians.

    Parameters
    ----------
    in_channels : int
        Input coordinates d.
    out_channels : int
        Output fields C.
    n_gaussians : int
        N > 0 (in all; per feature channel with ``layout="per_channel"``).
    feature_channels : int
        k > 0.
    hidden_channels : int
        Width of the MLP's hidden layers.
    n_layers : int
        Hidden layers of the MLP (1: the paper's ``k → 16 → tanh → C``).
    activation : {"tanh", "sin", "gelu"}
    sigma0 : float
        Initial Gaussian standard deviation, > 0.
    covariance : {"diagonal", "full"}
    bounds : list of [lo, hi], optional
        Domain box the means are drawn from.
    chunk_size : int
        Points evaluated against all Gaussians at once (bounds memory).
    layout : {"shared", "per_channel"}
        Gaussians with k-vector features, or N Gaussians per channel with scalar weights (the PIG
        authors' code; see :class:`~neurop.layers.gaussian.GaussianEmbedding`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        n_gaussians: int = 1000,
        feature_channels: int = 4,
        hidden_channels: int = 16,
        n_layers: int = 1,
        activation: JetActivation = "tanh",
        sigma0: float = 0.1,
        covariance: Covariance = "diagonal",
        bounds: list[list[float]] | None = None,
        chunk_size: int = 4096,
        layout: FeatureLayout = "shared",
    ) -> None:
        super().__init__()
        if activation not in JET_ACTIVATIONS:
            raise ValueError(f"activation must be one of {JET_ACTIVATIONS}, got {activation!r}")
        for key, val in (("hidden_channels", hidden_channels), ("n_layers", n_layers),
                         ("out_channels", out_channels)):  # fmt: skip
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {val!r}")
        self.activation = activation
        self.out_channels = out_channels
        self.embedding = GaussianEmbedding(
            in_channels, n_gaussians, feature_channels, sigma0, covariance,
            check_bounds(bounds, in_channels), chunk_size, layout=layout,
        )  # fmt: skip
        widths = [feature_channels] + [hidden_channels] * n_layers + [out_channels]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x: Tensor) -> Tensor:
        """``u(x)``: x of shape (N, in_channels) -> (N, out_channels)."""
        h = self.embedding(x)
        act = _PLAIN[self.activation]
        for layer in self.layers[:-1]:
            h = act(layer(h))
        return self.layers[-1](h)

    def jet(self, x: Tensor, second_axes: Sequence[int] = ()) -> Jet:
        """Values with first derivatives along every axis and second ones along ``second_axes``."""
        j = self.embedding.jet(x, second_axes)
        for layer in self.layers[:-1]:
            j = jet_activation(jet_linear(j, layer.weight, layer.bias), self.activation)
        last = self.layers[-1]
        return jet_linear(j, last.weight, last.bias)
