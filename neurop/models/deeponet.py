"""Deep operator network (DeepONet): a branch net over input samples times a trunk net over query points.

Lu, Jin, Pang, Zhang, Karniadakis, "Learning nonlinear operators via DeepONet", Nature Machine
Intelligence 3 (2021); the unstacked form with a bias, periodic trunk features and a CNN branch for
Darcy follow Lu et al., "A comprehensive and fair comparison of two neural operators", CMAME 393 (2022).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurop.layers.mlp import ActivationName, get_activation
from neurop.models import MODELS

BranchKind = Literal["mlp", "cnn"]
TrunkKind = Literal["mlp", "pod"]


def _check_positive_int(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


def grid_points(shape: Sequence[int], periodic: bool, device=None, dtype=torch.float32) -> Tensor:
    """Coordinates of every point of a uniform grid on the unit cube, in C (row-major) order.

    Parameters
    ----------
    shape : sequence of int
        Points per axis.
    periodic : bool
        ``True``: point ``j`` of ``n`` sits at ``j / n`` (right end excluded, as stored for periodic
        problems); ``False``: at ``j / (n - 1)`` (both boundaries included, as for Darcy).

    Returns
    -------
    Tensor, shape (prod(shape), len(shape))
    """
    axes = []
    for i, n in enumerate(shape):
        if n < (1 if periodic else 2):
            raise ValueError(f"grid size along axis {i} must be >= {1 if periodic else 2}, got {n}")
        axes.append(torch.arange(n, device=device, dtype=dtype) / (n if periodic else n - 1))
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


def sample_grid(x: Tensor, points: Tensor, periodic: bool) -> Tensor:
    """Multilinear interpolation of gridded fields at points of the unit cube.

    Parameters
    ----------
    x : Tensor, shape (B, C, *grid)
        Fields on a uniform grid with 1 to 3 axes (coordinate convention of :func:`grid_points`).
    points : Tensor, shape (Q, d)
        Coordinates in [0, 1]; periodic fields wrap around.
    periodic : bool

    Returns
    -------
    Tensor, shape (B, C, Q)
    """
    dim = x.ndim - 2
    if dim not in (1, 2, 3) or points.shape[-1] != dim:
        raise ValueError(f"expected (B, C, *grid) with 1-3 axes and (Q, {dim}) points, got {tuple(x.shape)}")
    if periodic:
        # Appending the first slice at coordinate 1 turns the periodic grid into a closed one.
        x = F.pad(x, (0, 1) * dim, mode="circular") if dim > 1 else torch.cat([x, x[..., :1]], dim=-1)
        points = torch.remainder(points, 1.0)
    batch, channels = x.shape[:2]
    # grid_sample wants (x, y[, z]) = last axis first, normalised to [-1, 1] with corners aligned.
    g = (2.0 * points.flip(-1) - 1.0).to(x.dtype)
    if dim == 1:
        x = x.unsqueeze(2)
        g = torch.cat([g, torch.zeros_like(g)], dim=-1)
    g = g.view(1, 1, *([1] * (max(dim, 2) - 2)), -1, max(dim, 2)).expand(batch, *([-1] * (max(dim, 2) + 1)))
    out = F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(batch, channels, -1)


class _MLP(nn.Module):
    """Fully connected network on the last axis; activation after every hidden layer."""

    def __init__(
        self, sizes: Sequence[int], activation: ActivationName, last_activation: bool = False
    ) -> None:
        super().__init__()
        self.act = get_activation(activation)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.last_activation = last_activation
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < n - 1 or self.last_activation:
                x = self.act(x)
        return x


class _CNNBranch(nn.Module):
    """Two stride-2 convolutions, then a fully connected head: the Darcy branch of Lu et al. (2022)."""

    def __init__(
        self,
        in_channels: int,
        grid: Sequence[int],
        conv_channels: int,
        hidden: int,
        out: int,
        activation: ActivationName,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        dim = len(grid)
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
        self.act = get_activation(activation)
        self.convs = nn.ModuleList(
            [
                conv(in_channels, conv_channels, kernel_size, stride=2),
                conv(conv_channels, conv_channels, kernel_size, stride=2),
            ]
        )
        size = list(grid)
        for _ in self.convs:
            size = [(n - kernel_size) // 2 + 1 for n in size]
        if min(size) < 1:
            raise ValueError(
                f"n_sensors={list(grid)} is too small for the cnn branch (two stride-2 convolutions with "
                f"kernel {kernel_size} need >= {3 * kernel_size - 2} points per axis)"
            )
        self.head = _MLP([conv_channels * math.prod(size), hidden, out], activation)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.convs:
            x = self.act(layer(x))
        return self.head(x.flatten(1))


@MODELS.register("deeponet")
class DeepONet(nn.Module):
    """Unstacked DeepONet ``G(a)(y)_c = Σ_k b_ck(a) t_ck(y) + β_c`` with a grid-in, grid-out interface.

    The branch sees the input field at a fixed sensor grid (``n_sensors``); any input grid is
    resampled there (exact strided subsampling when the grids nest, multilinear interpolation
    otherwise), so the same weights accept other resolutions. The trunk is evaluated at the points of
    the input grid (:meth:`forward`, ``(B, C, *grid) -> (B, out_channels, *grid)``, the interface of the
    grid operators and their metrics) or at arbitrary points (:meth:`evaluate`). Standardisation of
    inputs and outputs is done by the task's unit-Gaussian normalisers, as for every model.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output fields.
    n_sensors : sequence of int
        Sensor grid of the branch, one entry per spatial axis (e.g. ``[128]`` for Burgers,
        ``[29, 29]`` for Darcy); its length sets the spatial dimension.
    n_basis : int
        Number ``p`` of branch/trunk products per output channel.
    hidden_channels : int
        Width of the hidden layers of the branch and trunk networks.
    n_layers : int
        Hidden layers of the branch MLP and of the trunk MLP.
    branch : {"mlp", "cnn"}
        An MLP over the flattened sensor values, or two stride-2 convolutions (width
        ``conv_channels``) and a one-hidden-layer head over the sensor grid.
    conv_channels : int
        Channels of the CNN branch.
    n_harmonics : int
        ``0``: the trunk sees the coordinates, mapped from [0, 1] to [-1, 1]. ``K > 0``: it sees
        ``cos/sin(2πk y_i)`` for ``k = 1..K`` on every axis instead, which makes the output exactly
        periodic.
    periodic : bool
        Grid convention: periodic grids exclude the right end (point ``j`` at ``j/n``), closed grids
        include both boundaries (``j/(n-1)``); see :func:`grid_points`.
    activation : {"gelu", "tanh", "relu", "silu"}
        Hidden activation; the trunk's last layer is activated too (as in Lu et al.).
    trunk : {"mlp", "pod"}
        ``"mlp"``: a trainable trunk network. ``"pod"``: POD-DeepONet (Lu et al. 2022): the basis is the
        ``n_basis`` leading principal components of the training outputs on the sensor grid (each
        scaled so that its coefficients have unit variance over the training set), plus their
        mean, fixed after :meth:`fit_outputs` (the operator task calls it with the normalised training
        outputs before fitting); only the branch trains. Between grid points the modes are interpolated
        multilinearly. The modes are buffers, so checkpoints carry them.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_sensors: Sequence[int],
        n_basis: int = 100,
        hidden_channels: int = 128,
        n_layers: int = 3,
        branch: BranchKind = "mlp",
        conv_channels: int = 32,
        n_harmonics: int = 0,
        periodic: bool = True,
        activation: ActivationName = "gelu",
        trunk: TrunkKind = "mlp",
    ) -> None:
        super().__init__()
        for key, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("n_basis", n_basis),
            ("hidden_channels", hidden_channels),
            ("n_layers", n_layers),
            ("conv_channels", conv_channels),
        ):
            _check_positive_int(key, value)
        if isinstance(n_sensors, (int, str)) or not 1 <= len(n_sensors) <= 3:
            raise ValueError(f"n_sensors must be a list of 1 to 3 grid sizes, got {n_sensors!r}")
        for n in n_sensors:
            _check_positive_int("n_sensors entries", n)
        if not isinstance(n_harmonics, int) or isinstance(n_harmonics, bool) or n_harmonics < 0:
            raise ValueError(f"n_harmonics must be an integer >= 0, got {n_harmonics!r}")
        if branch not in ("mlp", "cnn"):
            raise ValueError(f"branch must be 'mlp' or 'cnn', got {branch!r}")
        if trunk not in ("mlp", "pod"):
            raise ValueError(f"trunk must be 'mlp' or 'pod', got {trunk!r}")
        get_activation(activation)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_sensors = [int(n) for n in n_sensors]
        self.dim = len(self.n_sensors)
        self.n_basis = n_basis
        self.n_harmonics = n_harmonics
        self.periodic = bool(periodic)
        width = out_channels * n_basis
        if branch == "mlp":
            sizes = [in_channels * math.prod(self.n_sensors)] + [hidden_channels] * n_layers + [width]
            self.branch: nn.Module = _MLP(sizes, activation)
        else:
            self.branch = _CNNBranch(
                in_channels, self.n_sensors, conv_channels, hidden_channels, width, activation
            )
        self.branch_kind = branch
        self.trunk_kind = trunk
        if trunk == "mlp":
            trunk_in = self.dim * (2 * n_harmonics if n_harmonics else 1)
            self.trunk = _MLP([trunk_in] + [hidden_channels] * n_layers + [width], activation, True)
        else:
            n_points = math.prod(self.n_sensors)
            if n_basis > n_points:
                raise ValueError(
                    f"n_basis={n_basis} exceeds the {n_points} points of the sensor grid "
                    f"n_sensors={self.n_sensors}: a POD trunk has at most that many modes"
                )
            self.register_buffer("pod_modes", torch.zeros(out_channels, n_basis, *self.n_sensors))
            self.register_buffer("pod_mean", torch.zeros(out_channels, *self.n_sensors))
            self.register_buffer("pod_fitted", torch.tensor(False))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("sensors", grid_points(self.n_sensors, self.periodic), persistent=False)
        if n_harmonics:
            # Integers, scaled by 2π in the working precision so that y and y + 1 give the same features.
            self.register_buffer("wavenumbers", torch.arange(1, n_harmonics + 1.0), persistent=False)

    # -- POD basis ------------------------------------------------------------------------------------
    @property
    def needs_output_fit(self) -> bool:
        """Whether :meth:`fit_outputs` must see the training outputs before training (a POD trunk)."""
        return self.trunk_kind == "pod"

    def fit_outputs(self, y: Tensor) -> Tensor | None:
        """Fit the POD trunk to training outputs (a no-op for an MLP trunk).

        Parameters
        ----------
        y : Tensor, shape (N, out_channels, *n_sensors)
            Training outputs in the units the network predicts (after the task's output normaliser).

        Returns
        -------
        Tensor of shape (out_channels,) or None
            For a POD trunk, the fraction of the centred outputs' energy the ``n_basis`` modes keep.
        """
        if self.trunk_kind != "pod":
            return None
        expected = (self.out_channels, *self.n_sensors)
        if y.ndim != self.dim + 2 or tuple(y.shape[1:]) != expected:
            raise ValueError(
                f"POD trunk: training outputs must have shape (N, {', '.join(map(str, expected))}) "
                f"(the sensor grid n_sensors={self.n_sensors}), got {tuple(y.shape)}; train on the "
                f"sensor grid"
            )
        n = y.shape[0]
        if n < 2:
            raise ValueError(f"POD trunk: fitting the modes needs at least 2 training samples, got {n}")
        if n <= self.n_basis:
            warnings.warn(
                f"POD trunk: {n} training samples span at most {n - 1} modes; the other modes of "
                f"n_basis={self.n_basis} are zero",
                stacklevel=2,
            )
        flat = y.detach().to(torch.float64).flatten(2)  # (N, C, P)
        mean = flat.mean(0)
        kept = []
        modes = flat.new_zeros(self.out_channels, self.n_basis, flat.shape[-1])
        for c in range(self.out_channels):
            _, sv, vh = torch.linalg.svd(flat[:, c] - mean[c], full_matrices=False)
            k = min(self.n_basis, sv.shape[0])
            # Mode k scaled by the spread of its coefficient: the branch then predicts coefficients of
            # unit variance over the training set, and an untrained branch outputs fields of the data's size.
            modes[c, :k] = vh[:k] * (sv[:k, None] / math.sqrt(n))
            energy = sv.square()
            kept.append(energy[:k].sum() / energy.sum().clamp_min(1e-300))
        with torch.no_grad():
            self.pod_modes.copy_(modes.view_as(self.pod_modes))
            self.pod_mean.copy_(mean.view_as(self.pod_mean))
            self.pod_fitted.fill_(True)
        return torch.stack(kept).to(torch.float32)

    def _pod_at(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """POD modes and mean at ``points`` (..., Q, dim): shapes (..., Q, C, n_basis) and (..., Q, C)."""
        if not bool(self.pod_fitted):
            raise RuntimeError(
                "the POD trunk is not fitted: call fit_outputs(training outputs) first (the operator task "
                "does this when training starts; a checkpoint carries the fitted modes)"
            )
        c, k = self.out_channels, self.n_basis
        fields = torch.cat([self.pod_modes.flatten(0, 1), self.pod_mean], dim=0).unsqueeze(0)
        flat = points.reshape(-1, self.dim)
        grid = list(self.n_sensors)
        if flat.shape[0] == math.prod(grid) and torch.equal(
            flat, grid_points(grid, self.periodic, device=flat.device, dtype=flat.dtype)
        ):
            vals = fields.to(points.dtype).flatten(2)  # the sensor grid itself: no interpolation
        else:
            vals = sample_grid(fields.to(points.dtype), flat, self.periodic)
        vals = vals[0].T  # (Q', C * K + C)
        lead = points.shape[:-1]
        return vals[:, : c * k].reshape(*lead, c, k), vals[:, c * k :].reshape(*lead, c)

    # -- parts ----------------------------------------------------------------------------------------
    def sensor_values(self, x: Tensor) -> Tensor:
        """The input fields at the sensor grid.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *grid)

        Returns
        -------
        Tensor, shape (B, in_channels, *n_sensors)
        """
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DeepONet expects input of shape (B, {self.in_channels}, *grid[{self.dim}]), "
                f"got {tuple(x.shape)}"
            )
        grid = list(x.shape[2:])
        if grid == self.n_sensors:
            return x
        strides = []
        for n, m in zip(grid, self.n_sensors, strict=True):
            if self.periodic and n % m == 0:
                strides.append(n // m)
            elif not self.periodic and m > 1 and (n - 1) % (m - 1) == 0:
                strides.append((n - 1) // (m - 1))
            else:
                strides.append(0)
        if all(strides):
            return x[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
        values = sample_grid(x, self.sensors.to(x.dtype), self.periodic)
        return values.view(*x.shape[:2], *self.n_sensors)

    def branch_coefficients(self, x: Tensor) -> Tensor:
        """Branch output ``b(a)``.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *grid)

        Returns
        -------
        Tensor, shape (B, out_channels, n_basis)
        """
        s = self.sensor_values(x)
        b = self.branch(s.flatten(1) if self.branch_kind == "mlp" else s)
        return b.view(x.shape[0], self.out_channels, self.n_basis)

    def trunk_basis(self, points: Tensor) -> Tensor:
        """Trunk output ``t(y)``.

        Parameters
        ----------
        points : Tensor, shape (..., Q, dim)
            Query coordinates on the unit cube.

        Returns
        -------
        Tensor, shape (..., Q, out_channels, n_basis)
        """
        if points.shape[-1] != self.dim:
            raise ValueError(
                f"query points must have {self.dim} coordinates, got shape {tuple(points.shape)}"
            )
        if self.trunk_kind == "pod":
            return self._pod_at(points)[0]
        # Raw coordinates are centred on [-1, 1]: on [0, 1] the trunk fits kinked Darcy solutions far worse.
        feats = 2.0 * points - 1.0
        if self.n_harmonics:
            phase = (2 * math.pi) * points.unsqueeze(-1) * self.wavenumbers.to(points.dtype)
            feats = torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1).flatten(-2)
        t = self.trunk(feats)
        return t.view(*points.shape[:-1], self.out_channels, self.n_basis)

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate(self, x: Tensor, points: Tensor) -> Tensor:
        """The output functions at arbitrary points.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *grid)
            Input fields.
        points : Tensor, shape (Q, dim) or (B, Q, dim)
            Query coordinates, shared by the batch or one set per sample.

        Returns
        -------
        Tensor, shape (B, out_channels, Q)
        """
        b = self.branch_coefficients(x)
        if not (points.ndim == 2 or (points.ndim == 3 and points.shape[0] == x.shape[0])):
            raise ValueError(
                f"points must have shape (Q, {self.dim}) or ({x.shape[0]}, Q, {self.dim}), "
                f"got {tuple(points.shape)}"
            )
        points = points.to(b.dtype)
        if self.trunk_kind == "pod":
            t, mean = self._pod_at(points)
        else:
            t, mean = self.trunk_basis(points), None
        if points.ndim == 2:
            out = torch.einsum("bck,qck->bcq", b, t)
            if mean is not None:
                out = out + mean.T.unsqueeze(0)
        else:
            out = torch.einsum("bck,bqck->bcq", b, t)
            if mean is not None:
                out = out + mean.transpose(1, 2)
        return out + self.bias.view(1, -1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate on the points of the input grid.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *grid)

        Returns
        -------
        Tensor, shape (B, out_channels, *grid)
        """
        grid = x.shape[2:]
        points = grid_points(grid, self.periodic, device=x.device, dtype=x.dtype)
        return self.evaluate(x, points).view(x.shape[0], self.out_channels, *grid)
