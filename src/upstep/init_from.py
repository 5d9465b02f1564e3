"""Start an SR model from pretrained diffusers weights (``upstep train --init-from FOLDER``).

A local diffusers folder holds ``vae/`` (an ``AutoencoderKL``) and ``unet/`` (a
``UNet2DModel``), each a ``config.json`` plus ``diffusion_pytorch_model.safetensors``; nothing
is downloaded and only safetensors are read (``use_safetensors=True``).

The SR U-Net (YONOS-SR §3.1) takes ``concat(z_t, z_l)``: C latent channels plus C_cond = C
channels of the encoded bicubic LR. The pretrained U-Net takes z_t alone, so its first
convolution is widened from C to C + C_cond input channels, the new input weights set to zero::

    W_in' = [ W_in | 0 ]      =>      conv_in'(concat(z_t, z_l)) = conv_in(z_t)

so the initial SR model is exactly the pretrained network on the noisy latent, whatever the
condition, and training learns how to use it. Caveats, stated once: the pretrained network was
trained on its own noise schedule and parameterisation (often epsilon prediction over 1000
discrete steps); here it is fed ``1000 t`` and read as a v-prediction on the cosine schedule, so
the initialisation is a good starting point, not a working SR model. A pretrained model
generates latents, not residuals, hence ``target`` defaults to ``"latent"`` for these models.

Only unconditional ``UNet2DModel`` folders are supported: a Stable Diffusion
``UNet2DConditionModel`` (cross-attention on text embeddings) is refused with a clear error.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from upstep.errors import ConfigError
from upstep.model import SRDiffusionModel
from upstep.nn.autoencoders import KLAutoencoder
from upstep.nn.unet import SRUNet

# AutoencoderKL settings KLAutoencoder.config() cannot express: they must hold their defaults.
_VAE_FIXED = {"in_channels": 3, "out_channels": 3, "act_fn": "silu", "use_quant_conv": True,
              "use_post_quant_conv": True, "mid_block_add_attention": True,
              "shift_factor": None, "latents_mean": None, "latents_std": None}


def is_diffusers_folder(path: str | Path) -> bool:
    p = Path(path)
    return (p / "vae" / "config.json").is_file() and (p / "unet" / "config.json").is_file()


def _class_name(folder: Path) -> str:
    try:
        return json.loads((folder / "config.json").read_text()).get("_class_name", "")
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{folder / 'config.json'}: cannot read ({e})") from e


def _load_vae(folder: Path) -> KLAutoencoder:
    from diffusers import AutoencoderKL

    if _class_name(folder) not in ("AutoencoderKL", ""):
        raise ConfigError(f"{folder}: expected an AutoencoderKL, found {_class_name(folder)!r}")
    try:
        vae = AutoencoderKL.from_pretrained(folder, use_safetensors=True)
    except (OSError, EnvironmentError, ValueError) as e:
        raise ConfigError(f"{folder}: cannot load the AutoencoderKL from safetensors ({e})") from e
    c = vae.config
    bad = {k: c.get(k) for k, v in _VAE_FIXED.items() if c.get(k, v) != v}
    n = len(c.block_out_channels)
    if tuple(c.down_block_types) != ("DownEncoderBlock2D",) * n or tuple(c.up_block_types) != ("UpDecoderBlock2D",) * n:
        bad["block types"] = (c.down_block_types, c.up_block_types)
    if bad:
        raise ConfigError(f"{folder}: unsupported AutoencoderKL settings {bad} (upstep's KL autoencoder "
                          f"needs {_VAE_FIXED} and DownEncoderBlock2D/UpDecoderBlock2D blocks)")
    # Rebuild through upstep's own config so that the saved model reloads with the same layers.
    ae = KLAutoencoder(block_out_channels=tuple(c.block_out_channels), latent_channels=c.latent_channels,
                       layers_per_block=c.layers_per_block, norm_num_groups=c.norm_num_groups,
                       scaling=float(c.scaling_factor))
    ae.vae.load_state_dict(vae.state_dict())
    return ae


def _load_unet(folder: Path):
    from diffusers import UNet2DModel

    name = _class_name(folder)
    if name == "UNet2DConditionModel":
        raise ConfigError(f"{folder}: a UNet2DConditionModel (text-conditioned Stable Diffusion U-Net) "
                          "is not supported; --init-from takes unconditional UNet2DModel folders only")
    if name not in ("UNet2DModel", ""):
        raise ConfigError(f"{folder}: expected a UNet2DModel, found {name!r}")
    try:
        return UNet2DModel.from_pretrained(folder, use_safetensors=True)
    except (OSError, EnvironmentError, ValueError) as e:
        raise ConfigError(f"{folder}: cannot load the UNet2DModel from safetensors ({e})") from e


def widen_unet(pretrained, cond_channels: int) -> SRUNet:
    """SRUNet whose first conv takes C + ``cond_channels`` inputs; new input weights are zero."""
    from diffusers import UNet2DModel

    c = pretrained.config
    if c.class_embed_type is not None or c.num_class_embeds is not None:
        raise ConfigError("class-conditional UNet2DModel (class_embed_type/num_class_embeds) is not supported")
    cfg = {k: v for k, v in dict(c).items() if not k.startswith("_")}
    cfg["in_channels"] = c.in_channels + cond_channels
    wide = UNet2DModel.from_config(cfg)
    state = pretrained.state_dict()
    w = state["conv_in.weight"]                                   # (out, C, k, k)
    zeros = w.new_zeros(w.shape[0], cond_channels, *w.shape[2:])  # the condition's weights
    state["conv_in.weight"] = torch.cat([w, zeros], dim=1)        # W_in' = [W_in | 0]
    wide.load_state_dict(state)
    return SRUNet(latent_channels=c.out_channels, cond_channels=cond_channels, unet=wide,
                  diffusers_config=dict(wide.config))


def load_diffusers_init(path: str | Path) -> tuple[KLAutoencoder, SRUNet]:
    """(autoencoder, U-Net) from a diffusers folder with ``vae/`` and ``unet/``.

    The autoencoder is upstep's ``KLAutoencoder`` holding the VAE weights (latent scaling =
    the VAE's ``scaling_factor``); the U-Net is the pretrained one with its first convolution
    widened for the LR-latent condition (zero weights, see the module docstring).
    """
    path = Path(path)
    if not is_diffusers_folder(path):
        raise ConfigError(f"{path}: not a diffusers folder (needs vae/config.json and unet/config.json)")
    ae = _load_vae(path / "vae")
    pre = _load_unet(path / "unet")
    C = ae.latent_channels
    if pre.config.in_channels != C or pre.config.out_channels != C:
        raise ConfigError(f"{path}: the U-Net maps {pre.config.in_channels} -> {pre.config.out_channels} "
                          f"channels but the VAE latent has {C}")
    return ae, widen_unet(pre, cond_channels=C)


def build_from_diffusers(path: str | Path, scale: int, target: str = "latent",
                         default_steps: int = 1) -> SRDiffusionModel:
    """The SR model built on a diffusers folder's VAE and (widened) U-Net."""
    ae, unet = load_diffusers_init(path)
    return SRDiffusionModel(ae, unet, scale, target=target, default_steps=default_steps)
