"""Plain ``nn.Module`` building blocks shared by the models (no Lightning, no Hydra)."""

from neurop.layers.embedding import (
    crop,
    grid_coords,
    grid_embedding,
    pad_right,
    padding_sizes,
)
from neurop.layers.mlp import (
    ChannelMLP,
    act_linear,
    activation_names,
    gated_add_,
    get_activation,
    pointwise_linear,
    two_layer,
)
from neurop.layers.spectral_conv import SpectralConv, check_n_modes, dft_matrices

__all__ = [
    "ChannelMLP",
    "SpectralConv",
    "act_linear",
    "activation_names",
    "check_n_modes",
    "crop",
    "dft_matrices",
    "gated_add_",
    "get_activation",
    "grid_coords",
    "grid_embedding",
    "pad_right",
    "padding_sizes",
    "pointwise_linear",
    "two_layer",
]
