"""KL autoencoder training (the latent-diffusion first stage, Rombach et al. 2022, App. G).

For an HR crop x in [-1, 1]:

    q(z | x) = N(mu(x), diag sigma^2(x))   (encoder),   z ~ q(z | x),   x_hat = D(z)
    L = |x - x_hat|_1 + w_p L_feat(x, x_hat) + w_kl KL(q(z | x) || N(0, I))

L_feat is the EfficientNet-Lite0 feature loss of ``upstep.nn.feature_loss`` (LPIPS-style, frozen
ImageNet features): latent diffusion's LPIPS-VGG is not available offline, and LPIPS-alex is the
evaluation metric, which is never trained on. Its distances run roughly an order of magnitude
above LPIPS's on the same image pairs, so the default w_p = 0.1 keeps about the balance of L1 and
perceptual terms that latent diffusion's w_p = 1 on LPIPS has.

Latent diffusion sums the reconstruction terms over pixels and the KL over latent elements, each
divided by the batch size, with w_kl = 1e-6. We average the reconstruction terms over pixels
instead, so the KL is divided by the same pixel count (B * 3 * H * W): the ratio of the terms —
and hence w_kl = 1e-6 — is the paper's. (The paper's patch-GAN term is left out here; the YONOS
decoder fine-tune, ``decoder_finetune``, adds it.)

The recipe builds the same SR model as ``standard`` from the ``model`` section (whose
``autoencoder.kind`` must be ``"kl"``) and trains only its autoencoder. The exported model is that
SR model: trained autoencoder plus the untouched (zero-output) U-Net, so it upscales as
``decode(encode(bicubic))`` and is the ``model.init_from`` of the diffusion training that
follows (``upstep train sr_config.json --init-from runs/ae/model``).

Config: ``"autoencoder_loss": {"perceptual_weight": 0.1, "kl_weight": 1e-6}``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from upstep.errors import ConfigError
from upstep.nn.autoencoders import KLAutoencoder
from upstep.recipes.base import Recipe, build_sr_model

DEFAULTS = {"perceptual_weight": 0.1, "kl_weight": 1e-6}


def section(cfg: dict, name: str, defaults: dict) -> dict:
    given = cfg.get(name, {})
    if "lpips_weight" in given and "perceptual_weight" in defaults:
        raise ConfigError(f"{name}.lpips_weight: LPIPS-alex is the evaluation metric and is never trained on; "
                          f"set {name}.perceptual_weight (the EfficientNet-Lite0 feature loss) instead")
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigError(f"{name}: unknown settings {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **given}


def perceptual_loss(weight: float, setting: str, device) -> nn.Module | None:
    """The frozen EfficientNet-Lite0 feature loss (images in [-1, 1]) when ``weight`` > 0; a
    clear ConfigError when its weights are absent."""
    if not weight:
        return None
    from upstep.nn.feature_loss import FeatureLoss
    from upstep.nn.efficientnet import WeightsUnavailable

    try:
        net = FeatureLoss()
    except WeightsUnavailable as e:
        raise ConfigError(f"{setting}={weight} needs the EfficientNet-Lite0 weights: {e}. "
                          f"Set {setting}=0 to train without the perceptual term.") from e
    return net.to(device).requires_grad_(False).eval()


class _VAEForward(nn.Module):
    """x -> (x_hat, posterior) through one forward call (what accelerate/DDP wraps)."""

    def __init__(self, ae: KLAutoencoder):
        super().__init__()
        self.ae = ae

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        post = self.ae.posterior(x)
        return self.ae.vae.decode(post.sample(generator=generator)).sample, post


class AutoencoderRecipe(Recipe):
    def __init__(self, cfg: dict, accelerator):
        super().__init__(cfg, accelerator)
        self.c = section(cfg, "autoencoder_loss", DEFAULTS)
        self.model = build_sr_model(cfg).to(accelerator.device)
        if not isinstance(self.model.autoencoder, KLAutoencoder):
            raise ConfigError("autoencoder recipe: model.autoencoder.kind must be 'kl' (the pixel-unshuffle "
                              "autoencoder has nothing to train)")
        self.model.requires_grad_(False).eval()
        self.model.autoencoder.requires_grad_(True).train()
        self.perceptual = perceptual_loss(self.c["perceptual_weight"], "autoencoder_loss.perceptual_weight",
                                          accelerator.device)
        self.trainable = {"autoencoder": _VAEForward(self.model.autoencoder)}
        tcfg = cfg["train"]
        self.optimizers = {"autoencoder": torch.optim.Adam(self.model.autoencoder.parameters(), lr=tcfg["lr"],
                                                           betas=(0.5, 0.9))}

    def train_step(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        x = hr01 * 2 - 1
        with self.accelerator.autocast():
            x_hat, post = self.wrapped["autoencoder"](x, generator=g)
        x_hat = x_hat.float()
        l1 = (x_hat - x).abs().mean()
        perc = self.perceptual(x_hat, x) if self.perceptual is not None else x.new_zeros(())
        kl = post.kl().float().sum() / x.numel()          # per pixel element, see the docstring
        loss = l1 + self.c["perceptual_weight"] * perc + self.c["kl_weight"] * kl
        self.backward_step(loss, "autoencoder", "autoencoder")
        return {"loss": loss.item(), "l1": l1.item(), "perceptual": perc.item(), "kl": kl.item()}

    def export(self):
        return copy.deepcopy(self.model).cpu().eval()

    @torch.no_grad()
    def validate(self, hr01: torch.Tensor) -> dict[str, float]:
        """Reconstruction PSNR-Y (posterior mode, uint8-quantised) on held-apart crops."""
        from upstep.metrics import psnr

        ae = self.model.autoencoder
        was = ae.training
        ae.eval()
        rec = ((ae.decode(ae.encode(hr01 * 2 - 1)).clamp(-1, 1) + 1) / 2)
        ae.train(was)
        return {"val_psnr_recon": float(psnr(torch.round(rec * 255) / 255, hr01).mean())}
