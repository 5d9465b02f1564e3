"""Autoencoders: the map between pixels and the latent space the diffusion runs in.

Interface (every implementation): ``encode(x) -> z`` and ``decode(z) -> x`` with pixels
NCHW in [-1, 1] whose H and W are multiples of ``factor``; ``z`` has ``latent_channels``
channels at H/factor x W/factor and is already multiplied by ``scaling`` (unit-ish variance,
the latent-diffusion convention). ``config()`` returns the JSON-able dict that rebuilds it.

* ``PixelUnshuffleAutoencoder``: parameter-free and lossless (pixel_unshuffle / pixel_shuffle).
  The cheapest latent for CPU-size models; the shipped default uses it.
* ``RefinedPixelShuffleAutoencoder``: the same latent with a learnable decoder for YONOS §3.3 —
  pixel_shuffle, then a small refinement network at HR resolution added as a residual
  (``x = ps(z) + R(ps(z))``). Each latent channel is one sub-pixel position of a 4x4 cell, so
  errors in the latent come out 4x4-periodic (checkerboards); R sees across cells and can
  remove them. R's last convolution starts at zero: a fresh decoder is exactly pixel_shuffle.
* ``ResizeConvAutoencoder``: the same latent with a learnable decoder ``x = ps(z) + R(z)`` whose
  residual branch R cannot make 4x4-periodic patterns: convolutions at latent resolution, then
  bilinear x2 upsampling followed by convolution, to full resolution ("resize-convolution",
  Odena et al. 2016, "Deconvolution and checkerboard artifacts"). Shift-invariant layers after a
  smooth upsampler treat every sub-pixel position alike, so perceptual and adversarial gradients
  have no per-position weights to excite. R's last convolution starts at zero (identity start).
  With the U-Net frozen (YONOS §3.3, decoder fine-tuning), this is the shipped perceptual decoder.
* ``KLAutoencoder``: a learned KL autoencoder on diffusers' ``AutoencoderKL`` (trained by
  ``upstep.recipes.autoencoder``; its decoder is what YONOS decoder fine-tuning trains).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Autoencoder(nn.Module):
    factor: int
    latent_channels: int
    scaling: float

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def config(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


def _identity_state(decoder: nn.Module, last: nn.Conv2d) -> dict[str, torch.Tensor]:
    """A zero-start decoder's parameters (state_dict names) as they are, except its zero-initialised
    last convolution, zeroed: the decoder at an identity start (exactly pixel_shuffle) that shares
    every other layer with this one. ``upstep.strength`` uses it as the fidelity end of a decoder
    that perceptual training added."""
    return {name: torch.zeros_like(p) if p is last.weight or p is last.bias else p.detach().clone()
            for name, p in decoder.named_parameters()}


class PixelUnshuffleAutoencoder(Autoencoder):
    def __init__(self, factor: int = 4, in_channels: int = 3, scaling: float = 1.0):
        super().__init__()
        self.factor = factor
        self.in_channels = in_channels
        self.latent_channels = in_channels * factor * factor
        self.scaling = scaling

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, self.factor) * self.scaling

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(z / self.scaling, self.factor)

    def config(self) -> dict:
        return {"kind": "pixel_unshuffle", "factor": self.factor, "in_channels": self.in_channels,
                "scaling": self.scaling}


class RefinedPixelShuffleAutoencoder(PixelUnshuffleAutoencoder):
    """pixel_unshuffle encoder; decoder ``ps(z) + R(ps(z))`` with R = ``layers`` 3x3 convs of
    ``channels`` width (SiLU between), last conv zero-initialised."""

    def __init__(self, factor: int = 4, in_channels: int = 3, scaling: float = 1.0,
                 channels: int = 12, layers: int = 3):
        super().__init__(factor, in_channels, scaling)
        if layers < 2:
            raise ValueError(f"the refinement network needs at least 2 layers, got {layers}")
        convs: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.SiLU()]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU()]
        convs.append(nn.Conv2d(channels, in_channels, 3, padding=1))
        nn.init.zeros_(convs[-1].weight)
        nn.init.zeros_(convs[-1].bias)
        self.refine = nn.Sequential(*convs)
        self.channels, self.layers = channels, layers

    @property
    def last_layer(self) -> torch.Tensor:
        return self.refine[-1].weight

    def identity_state(self) -> dict[str, torch.Tensor]:
        return _identity_state(self, self.refine[-1])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = super().decode(z)
        return x + self.refine(x)

    def config(self) -> dict:
        return {**super().config(), "kind": "pixel_unshuffle_refined", "channels": self.channels,
                "layers": self.layers}

    @classmethod
    def from_plain(cls, ae: PixelUnshuffleAutoencoder, **refine) -> "RefinedPixelShuffleAutoencoder":
        """The same latent as ``ae`` with a fresh (identity) refinement network."""
        return cls(ae.factor, ae.in_channels, ae.scaling, **refine)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResizeConvAutoencoder(PixelUnshuffleAutoencoder):
    """pixel_unshuffle encoder; decoder ``ps(z) + R(z)``. R: a 3x3 conv to ``width`` channels and
    ``blocks`` residual blocks at latent resolution, then log2(factor) stages of (bilinear x2,
    3x3 conv): SiLU-activated ones to ``hr_channels`` channels, the last one to pixels and
    zero-initialised. Full resolution costs just that last conv (the decoder's time is mostly
    memory traffic at HR size)."""

    def __init__(self, factor: int = 4, in_channels: int = 3, scaling: float = 1.0,
                 width: int = 48, blocks: int = 1, hr_channels: int = 16):
        super().__init__(factor, in_channels, scaling)
        if factor < 2 or factor & (factor - 1):
            raise ValueError(f"the resize-convolution decoder needs a power-of-two factor, got {factor}")
        layers: list[nn.Module] = [nn.Conv2d(self.latent_channels, width, 3, padding=1)]
        layers += [_ResidualBlock(width) for _ in range(blocks)]
        c = width
        for _ in range(factor.bit_length() - 2):
            layers += [nn.SiLU(), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.Conv2d(c, hr_channels, 3, padding=1)]
            c = hr_channels
        layers += [nn.SiLU(), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                   nn.Conv2d(c, in_channels, 3, padding=1)]
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.residual = nn.Sequential(*layers)
        self.width, self.blocks, self.hr_channels = width, blocks, hr_channels

    @property
    def last_layer(self) -> torch.Tensor:
        return self.residual[-1].weight

    def identity_state(self) -> dict[str, torch.Tensor]:
        return _identity_state(self, self.residual[-1])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode(z) + self.residual(z / self.scaling)

    def config(self) -> dict:
        return {**super().config(), "kind": "pixel_unshuffle_resize", "width": self.width,
                "blocks": self.blocks, "hr_channels": self.hr_channels}

    @classmethod
    def from_plain(cls, ae: PixelUnshuffleAutoencoder, **kw) -> "ResizeConvAutoencoder":
        """The same latent as ``ae`` with a fresh (identity) decoder."""
        return cls(ae.factor, ae.in_channels, ae.scaling, **kw)


class KLAutoencoder(Autoencoder):
    """diffusers ``AutoencoderKL``; ``encode`` returns the posterior mode (deterministic)."""

    def __init__(self, block_out_channels=(32, 64, 64), latent_channels: int = 8,
                 layers_per_block: int = 1, norm_num_groups: int = 16, scaling: float = 1.0,
                 vae: nn.Module | None = None):
        super().__init__()
        from diffusers import AutoencoderKL

        if vae is None:
            n = len(block_out_channels)
            vae = AutoencoderKL(
                in_channels=3, out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * n,
                up_block_types=("UpDecoderBlock2D",) * n,
                block_out_channels=tuple(block_out_channels),
                layers_per_block=layers_per_block,
                latent_channels=latent_channels,
                norm_num_groups=norm_num_groups,
            )
        self.vae = vae
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = vae.config.latent_channels
        self.scaling = scaling

    def posterior(self, x: torch.Tensor):
        return self.vae.encode(x).latent_dist

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x).mode() * self.scaling

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z / self.scaling).sample

    def config(self) -> dict:
        c = self.vae.config
        return {"kind": "kl", "block_out_channels": list(c.block_out_channels),
                "latent_channels": c.latent_channels, "layers_per_block": c.layers_per_block,
                "norm_num_groups": c.norm_num_groups, "scaling": self.scaling}


def build_autoencoder(config: dict) -> Autoencoder:
    cfg = dict(config)
    kind = cfg.pop("kind")
    if kind == "pixel_unshuffle":
        return PixelUnshuffleAutoencoder(**cfg)
    if kind == "pixel_unshuffle_refined":
        return RefinedPixelShuffleAutoencoder(**cfg)
    if kind == "pixel_unshuffle_resize":
        return ResizeConvAutoencoder(**cfg)
    if kind == "kl":
        return KLAutoencoder(**cfg)
    raise ValueError(f"unknown autoencoder kind {kind!r}: use 'pixel_unshuffle', "
                     "'pixel_unshuffle_refined', 'pixel_unshuffle_resize' or 'kl'")
