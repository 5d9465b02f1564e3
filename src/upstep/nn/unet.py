"""The denoising U-Net: diffusers ``UNet2DModel`` whose input is concat(noisy latent, LR latent).

``SRUNet(z_t, cond, t)`` with t in [0, 1] (continuous; fed to the sinusoidal time embedding
as 1000 t). ``mid_attention`` (diffusers' default, on) puts self-attention over every latent
position of the lowest level in the middle block: its cost grows with the square of the tile
area, and it makes the output depend on the tile size; off, the network is convolutional
throughout. The output convolution starts at zero, so an untrained network predicts v = 0;
with the residual target and t = 1 that is exactly the bicubic upscale.

``diffusers_config`` (optional) is a full diffusers U-Net config: the network is built from it
instead of the small factory above, and it is saved with the model (used by
``upstep.init_from`` for U-Nets initialised from pretrained diffusers weights).
``diffusers_class`` says which class: ``"UNet2DModel"`` (text-free) or ``"UNet2DConditionModel"``
(Stable Diffusion's, with cross-attention). The latter's text condition is a FIXED embedding,
``null_embedding`` (1, L, D): a buffer saved in the model's safetensors (the empty prompt's
text-encoder output, computed once by ``upstep.init_from``), so inference needs no text encoder.
"""
from __future__ import annotations

import torch
from torch import nn


class SRUNet(nn.Module):
    def __init__(self, latent_channels: int, cond_channels: int | None = None,
                 block_out_channels=(64, 128, 128), layers_per_block: int = 1,
                 attention: bool = False, norm_num_groups: int = 16, zero_init_out: bool = True,
                 mid_attention: bool = True,
                 unet: nn.Module | None = None, diffusers_config: dict | None = None,
                 diffusers_class: str = "UNet2DModel", null_embedding_shape=None):
        super().__init__()
        import diffusers
        from diffusers import UNet2DModel

        if diffusers_class not in ("UNet2DModel", "UNet2DConditionModel"):
            raise ValueError(f"diffusers_class must be UNet2DModel or UNet2DConditionModel, got {diffusers_class!r}")
        if (diffusers_class == "UNet2DConditionModel") != (null_embedding_shape is not None):
            raise ValueError("a UNet2DConditionModel needs null_embedding_shape [L, D] (and only it)")

        cond_channels = latent_channels if cond_channels is None else cond_channels
        self.latent_channels = latent_channels
        self.cond_channels = cond_channels
        if diffusers_config is not None:  # an arbitrary UNet2DModel architecture, kept verbatim
            diffusers_config = {k: (list(v) if isinstance(v, tuple) else v)
                                for k, v in dict(diffusers_config).items() if not k.startswith("_")}
            if unet is None:
                unet = getattr(diffusers, diffusers_class).from_config(diffusers_config)
            block_out_channels = tuple(diffusers_config["block_out_channels"])
            layers_per_block = diffusers_config["layers_per_block"]
            norm_num_groups = diffusers_config["norm_num_groups"]
        n = len(block_out_channels)
        if unet is None:
            down = ["DownBlock2D"] * n
            up = ["UpBlock2D"] * n
            if attention:  # attention at the lowest resolution only (cheap at CPU sizes)
                down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
            unet = UNet2DModel(
                in_channels=latent_channels + cond_channels, out_channels=latent_channels,
                block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
                down_block_types=tuple(down), up_block_types=tuple(up),
                norm_num_groups=norm_num_groups, attention_head_dim=8, add_attention=mid_attention,
            )
            if zero_init_out:
                nn.init.zeros_(unet.conv_out.weight)
                nn.init.zeros_(unet.conv_out.bias)
        self.unet = unet
        self._config = {"latent_channels": latent_channels, "cond_channels": cond_channels,
                        "block_out_channels": list(block_out_channels),
                        "layers_per_block": layers_per_block, "attention": attention,
                        "norm_num_groups": norm_num_groups, "mid_attention": mid_attention}
        if diffusers_config is not None:
            self._config["diffusers_config"] = diffusers_config
        self.register_buffer("null_embedding", None if null_embedding_shape is None
                             else torch.zeros(1, *null_embedding_shape))
        if null_embedding_shape is not None:
            self._config.update(diffusers_class=diffusers_class, null_embedding_shape=list(null_embedding_shape))

    @property
    def multiple(self) -> int:
        """Latent H and W must be multiples of this (one halving per down block)."""
        return 2 ** (len(self._config["block_out_channels"]) - 1)

    def forward(self, z_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z_t, cond.to(z_t.dtype)], dim=1)
        if self.null_embedding is None:
            return self.unet(x, t * 1000.0).sample
        text = self.null_embedding.to(x.dtype).expand(x.shape[0], -1, -1)  # the same prompt for all
        return self.unet(x, t * 1000.0, encoder_hidden_states=text).sample

    def config(self) -> dict:
        return dict(self._config)


def set_memory_options(module: nn.Module, gradient_checkpointing: bool = False,
                       attention: str | None = None) -> None:
    """GPU-scale training switches on every diffusers network inside ``module``:
    activation (gradient) checkpointing, and ``attention="sdpa"``: every attention layer runs
    PyTorch's ``scaled_dot_product_attention`` (flash / memory-efficient kernels where available)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0
    from diffusers.models.modeling_utils import ModelMixin

    if attention not in (None, "sdpa"):
        from upstep.errors import ConfigError

        raise ConfigError(f"train.attention must be 'sdpa' (PyTorch scaled_dot_product_attention), got {attention!r}")
    for m in module.modules():
        if gradient_checkpointing and isinstance(m, ModelMixin) and m._supports_gradient_checkpointing:
            m.enable_gradient_checkpointing()
        if attention == "sdpa" and isinstance(m, Attention):
            m.set_processor(AttnProcessor2_0())


def build_unet(config: dict) -> SRUNet:
    return SRUNet(**config)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
