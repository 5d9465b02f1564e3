"""Start an SR model from pretrained diffusers weights (``upstep train --init-from FOLDER``).

A local diffusers folder holds ``vae/`` (an ``AutoencoderKL``) and ``unet/`` (a
``UNet2DModel``, or a Stable Diffusion 1.x/2.x ``UNet2DConditionModel``), each a
``config.json`` plus ``diffusion_pytorch_model.safetensors``; nothing is downloaded and only
safetensors are read (``use_safetensors=True``). The latent scaling is the VAE config's
``scaling_factor`` (0.18215 for SD 1.x/2.x).

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

Text condition of a ``UNet2DConditionModel`` (YONOS-SR starts from a text-to-image model but
SR has no prompt): a FIXED "null prompt" embedding c_0, the text encoder's output for the empty
prompt "" (padded to the tokenizer's length, as SD pipelines do for classifier-free guidance)::

    v_hat = unet(concat(z_t, z_l), 1000 t, encoder_hidden_states = c_0)

c_0 is computed once here from ``text_encoder/`` (a transformers ``CLIPTextModel``) and
``tokenizer/`` (``CLIPTokenizer``) when the folder has them (``pip install 'upstep[sd]'``),
else it is zeros; either way it is stored as a buffer in the model's safetensors, so training
and inference never load a text encoder. SDXL-style U-Nets (added time/text embeddings) and
class-conditional ones are refused with a clear error.
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


# UNet2DConditionModel settings that need inputs other than (sample, t, text embedding).
_UNET_COND_UNSUPPORTED = ("class_embed_type", "num_class_embeds", "addition_embed_type",
                          "encoder_hid_dim_type", "time_cond_proj_dim")
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")


def _load_unet(folder: Path):
    import diffusers

    name = _class_name(folder) or "UNet2DModel"
    if name not in UNET_CLASSES:
        raise ConfigError(f"{folder}: a {name!r} U-Net is not supported; --init-from takes a UNet2DModel "
                          "or a Stable Diffusion 1.x/2.x UNet2DConditionModel")
    cfg = json.loads((folder / "config.json").read_text())
    keys = _UNET_COND_UNSUPPORTED if name == "UNet2DConditionModel" else ("class_embed_type", "num_class_embeds")
    bad = {k: cfg[k] for k in keys if cfg.get(k) is not None}
    if bad:
        raise ConfigError(f"{folder}: unsupported {name} settings {bad} (extra conditioning inputs, e.g. "
                          "SDXL's added time/text embeddings or class labels); upstep feeds only the noisy "
                          "latent, the time and a fixed null-prompt embedding. Use an SD 1.x/2.x folder")
    try:
        return getattr(diffusers, name).from_pretrained(folder, use_safetensors=True)
    except (OSError, EnvironmentError, ValueError) as e:
        raise ConfigError(f"{folder}: cannot load the {name} from safetensors ({e})") from e


@torch.no_grad()
def null_prompt_embedding(path: Path, shape: tuple[int, int]) -> torch.Tensor:
    """c_0 (1, L, D): the text encoder's last hidden state for the prompt "" if ``path`` has
    ``text_encoder/`` and ``tokenizer/``, else zeros of ``shape`` (the U-Net's
    ``(max_length, cross_attention_dim)``)."""
    enc, tok = path / "text_encoder", path / "tokenizer"
    if not (enc / "config.json").is_file():
        return torch.zeros(1, *shape)
    if not tok.is_dir():
        raise ConfigError(f"{path}: has text_encoder/ but no tokenizer/; add the tokenizer folder, or remove "
                          "text_encoder/ to start from a zero text embedding")
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as e:
        raise ConfigError(f"{path}: has text_encoder/, and computing its empty-prompt embedding needs "
                          "transformers: pip install 'upstep[sd]' (or remove text_encoder/ to use zeros)") from e
    try:
        tokenizer = CLIPTokenizer.from_pretrained(tok)
        encoder = CLIPTextModel.from_pretrained(enc, use_safetensors=True).eval()
    except (OSError, EnvironmentError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load the CLIP tokenizer/text encoder ({e})") from e
    ids = tokenizer([""], padding="max_length", max_length=shape[0], truncation=True,
                    return_tensors="pt").input_ids
    emb = encoder(ids).last_hidden_state.float()          # what SD pipelines feed for prompt ""
    if tuple(emb.shape[1:]) != tuple(shape):
        raise ConfigError(f"{path}: the text encoder gives embeddings of shape {tuple(emb.shape[1:])}, "
                          f"but the U-Net's cross-attention expects (L, {shape[1]})")
    return emb


def widen_unet(pretrained, cond_channels: int, null_embedding: torch.Tensor | None = None) -> SRUNet:
    """SRUNet whose first conv takes C + ``cond_channels`` inputs; new input weights are zero.
    A UNet2DConditionModel also gets its fixed text condition ``null_embedding`` (1, L, D)."""
    c = pretrained.config
    cfg = {k: v for k, v in dict(c).items() if not k.startswith("_")}
    cfg["in_channels"] = c.in_channels + cond_channels
    wide = type(pretrained).from_config(cfg)
    state = pretrained.state_dict()
    w = state["conv_in.weight"]                                   # (out, C, k, k)
    zeros = w.new_zeros(w.shape[0], cond_channels, *w.shape[2:])  # the condition's weights
    state["conv_in.weight"] = torch.cat([w, zeros], dim=1)        # W_in' = [W_in | 0]
    wide.load_state_dict(state)
    extra = {}
    if null_embedding is not None:
        extra = {"diffusers_class": type(pretrained).__name__, "null_embedding_shape": list(null_embedding.shape[1:])}
    unet = SRUNet(latent_channels=c.out_channels, cond_channels=cond_channels, unet=wide,
                  diffusers_config=dict(wide.config), **extra)
    if null_embedding is not None:
        unet.null_embedding.copy_(null_embedding)
    return unet


def load_diffusers_init(path: str | Path) -> tuple[KLAutoencoder, SRUNet]:
    """(autoencoder, U-Net) from a diffusers folder with ``vae/`` and ``unet/``.

    The autoencoder is upstep's ``KLAutoencoder`` holding the VAE weights (latent scaling =
    the VAE's ``scaling_factor``); the U-Net is the pretrained one with its first convolution
    widened for the LR-latent condition (zero weights, see the module docstring) and, for a
    text-conditioned U-Net, its fixed null-prompt embedding.
    """
    path = Path(path)
    if not is_diffusers_folder(path):
        raise ConfigError(f"{path}: not a diffusers folder (needs vae/config.json and unet/config.json, "
                          "e.g. a Stable Diffusion 1.x/2.x folder saved with save_pretrained)")
    ae = _load_vae(path / "vae")
    pre = _load_unet(path / "unet")
    C = ae.latent_channels
    if pre.config.in_channels != C or pre.config.out_channels != C:
        raise ConfigError(f"{path}: the U-Net maps {pre.config.in_channels} -> {pre.config.out_channels} "
                          f"channels but the VAE latent has {C}")
    null = None
    if type(pre).__name__ == "UNet2DConditionModel":
        dim = pre.config.cross_attention_dim
        if not isinstance(dim, int):
            raise ConfigError(f"{path / 'unet'}: per-block cross_attention_dim {dim} is not supported")
        null = null_prompt_embedding(path, (_max_length(path), dim))
    return ae, widen_unet(pre, cond_channels=C, null_embedding=null)


def _max_length(path: Path) -> int:
    """The text length L of the null embedding: the tokenizer's ``model_max_length`` (77 for
    CLIP) when the folder has one, else 77."""
    cfg = path / "tokenizer" / "tokenizer_config.json"
    try:
        n = json.loads(cfg.read_text()).get("model_max_length") if cfg.is_file() else None
    except (OSError, json.JSONDecodeError):
        n = None
    return int(n) if isinstance(n, int) and 0 < n <= 4096 else 77


def build_from_diffusers(path: str | Path, scale: int, target: str = "latent",
                         default_steps: int = 1, omega_max: float = 1000.0) -> SRDiffusionModel:
    """The SR model built on a diffusers folder's VAE and (widened) U-Net."""
    from upstep.diffusion.schedule import CosineSchedule

    ae, unet = load_diffusers_init(path)
    return SRDiffusionModel(ae, unet, scale, target=target, default_steps=default_steps,
                            schedule=CosineSchedule(omega_max=omega_max))
