"""Perceptual fine-tuning of a one-step SR model (ESRGAN's recipe on a diffusion model; YONOS §3.3
when only the decoder trains).

Start from a PSNR-trained one-step model (``init_from``: a model folder or a shipped name, as
ESRGAN starts from its PSNR model). The generator is the model's one-step map at t = 1,

    x_l = degrade(x_h);  z_l = E(bicubic(x_l));  eps ~ N(0, I)
    x_hat = D_dec(from_target(z0_hat(eps, z_l, t = 1), z_l))

with D_dec the learnable decoder: for a pixel-unshuffle latent, one added here when the model has
none, starting as the identity — ``perceptual.decoder.kind`` "resize" (``ResizeConvAutoencoder``:
pixel_shuffle plus a resize-convolution branch, which cannot make 4x4-periodic patterns) or
"refine" (``RefinedPixelShuffleAutoencoder``: pixel_shuffle plus a refinement network at HR
resolution); for a KL latent, its decoder. Trained networks: the decoder, and the
U-Net unless ``train_unet`` is false (then this is YONOS decoder fine-tuning with these losses).
Losses, with Real-ESRGAN's weights by default (L1 1, perceptual 1, GAN 0.1):

    L_G = w_1 |x_hat - x_h|_1 + w_f L_feat(x_hat, x_h) + w_g (-E[D_H(A(x_hat))]) + w_a L_LDL
    L_D = E[relu(1 - D_H(A(x_h)))] + E[relu(1 + D_H(A(x_hat)))]              (hinge, per head)

With ``usm_target`` (Real-ESRGAN's choice, ``upstep.degrade.usm``) the L1 and feature terms compare
x_hat with USM(x_h), and the LR is degraded from USM(x_h); the discriminator's real images stay x_h.

With ``teacher`` (a model folder or shipped name of the same scale, e.g. "large-x4") the L1 and
feature terms compare x_hat with the frozen teacher's one-step output on the same LR and noise,
T(x_l, eps), instead of x_h: output distillation (Hinton et al. 2015) of the project's own larger
model into a smaller one. The discriminator's real images stay x_h, and LDL's reference stays the
student's EMA.

L_feat is the EfficientNet-Lite0 feature loss (``upstep.nn.feature_loss``), D_H the projected
discriminator on frozen EfficientNet-Lite0 features (``upstep.nn.discriminators``), A DiffAugment.
LPIPS-alex is only ever measured, never trained on. The degradation (``data.degradation``) is
typically a mixture, e.g. ``{"realesrgan": 0.7, "bicubic": 0.3}``.

Config::

    "recipe": "perceptual",
    "init_from": "default-x4",
    "perceptual": {"train_unet": true,
                   "decoder": {"kind": "refine", "channels": 12, "layers": 3}
                              (or {"kind": "resize", "width": 48, "blocks": 1, "hr_channels": 16},
                               or null with degrid_sigma > 0: no decoder, no full-resolution layer),
                   "l1_weight": 1.0, "feature_weight": 1.0, "gan_weight": 0.1, "gan_start": 0,
                   "disc": {"features": "efficientnet_lite0", "augment": ["color", "translation", "cutout"],
                            "head_channels": 64},
                   "disc_lr_mult": 1.0, "feature_net": "efficientnet_lite0", "usm_target": false,
                   "feature_taps": null,     (EfficientNet blocks; null: FEATURE_TAPS, 1/4 ... 1/32)
                   "degrid_sigma": 0,        (> 0: the model's residual goes through the fixed notch at
                                              the 4x4 grid frequencies, ``upstep.nn.degrid``; pixel-unshuffle
                                              latents)
                   "ldl_weight": 0, "ldl_window": 7,  (> 0: LDL's artifact term, ``upstep.nn.ldl``, with the
                                              generator's EMA as its stable reference; Real-ESRGAN+LDL uses 1)
                   "teacher": null}           (a one-step model of the same scale: L1 and feature
                                              targets are its outputs; not with usm_target)

The exported model is the EMA of the generator (U-Net + decoder), saved like any other.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from upstep.errors import ConfigError
from upstep.model import SRDiffusionModel, load_model
from upstep.nn.autoencoders import (KLAutoencoder, PixelUnshuffleAutoencoder, RefinedPixelShuffleAutoencoder,
                                    ResizeConvAutoencoder)
from upstep.nn.discriminators import ProjectedDiscriminator, d_hinge_loss, g_hinge_loss
from upstep.recipes.autoencoder import section
from upstep.recipes.base import Recipe, make_pair, validate_models

DEFAULTS = {"train_unet": True, "decoder": {"kind": "refine", "channels": 12, "layers": 3},
            "l1_weight": 1.0, "feature_weight": 1.0, "gan_weight": 0.1, "gan_start": 0,
            "disc": {"features": "efficientnet_lite0", "augment": ["color", "translation", "cutout"],
                     "head_channels": 64},
            "disc_lr_mult": 1.0, "feature_net": "efficientnet_lite0", "feature_taps": None, "degrid_sigma": 0.0,
            "usm_target": False, "ldl_weight": 0.0, "ldl_window": 7, "teacher": None}


DECODERS = {"refine": RefinedPixelShuffleAutoencoder, "resize": ResizeConvAutoencoder}


class OneStepGenerator(nn.Module):
    """(z_l, eps) -> HR pixels [-1, 1]: one v-prediction at t = 1, then the decoder. Its
    parameters are the U-Net's and the decoder's (what EMA and the optimiser see)."""

    def __init__(self, model: SRDiffusionModel):
        super().__init__()
        self.model = model

    def forward(self, z_l: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        m = self.model
        t = torch.ones(z_l.shape[0], device=z_l.device)
        z0 = m.schedule.z0_from_v(eps, m.predict_v(eps, z_l, t).float(), t)   # = -v_hat at t = 1
        return m.autoencoder.decode(m.from_target(z0, z_l))


def load_teacher(name: str, scale: int) -> "OneStepGenerator":
    """The frozen teacher's one-step map, from a model folder or a shipped model name."""
    from upstep.api import resolve_model

    teacher = load_model(resolve_model(name))
    if not isinstance(teacher, SRDiffusionModel):
        raise ConfigError(f"perceptual.teacher: {name} is a {teacher.kind!r} model, not 'vdiffusion'")
    if teacher.scale != scale:
        raise ConfigError(f"perceptual.teacher: {name} is a x{teacher.scale} model but the student is x{scale}; "
                          "use a teacher of the same scale")
    return OneStepGenerator(teacher.eval().requires_grad_(False))


def load_start_model(cfg: dict, decoder_cfg: dict | None, degrid: bool = False) -> SRDiffusionModel:
    """The PSNR-trained starting point, with a learnable decoder (``decoder_cfg``). A pixel-unshuffle
    model may go without one (``decoder_cfg`` null) when its residual goes through the grid notch
    (``degrid``): the notch then filters everything the model adds to the bicubic image."""
    from upstep.api import resolve_model

    path = cfg.get("model", {}).get("init_from") or cfg.get("init_from")   # --init-from wins
    if not path:
        raise ConfigError("perceptual: set `init_from` to a trained one-step model folder or a shipped model "
                          "name (e.g. \"default-x4\")")
    model = load_model(resolve_model(path))
    if not isinstance(model, SRDiffusionModel):
        raise ConfigError(f"perceptual: {path} is a {model.kind!r} model, not 'vdiffusion'")
    scale = cfg.get("data", {}).get("scale")
    if scale is not None and int(scale) != model.scale:
        raise ConfigError(f"perceptual: data.scale is x{scale} but {path} is a x{model.scale} model")
    ae = model.autoencoder
    if type(ae) is PixelUnshuffleAutoencoder:
        if not decoder_cfg:
            if degrid:
                return model
            raise ConfigError("perceptual: a pixel-unshuffle model needs perceptual.decoder "
                              "({\"kind\": \"resize\"}) or perceptual.degrid_sigma > 0: with neither, the "
                              "adversarial gradients excite the 4x4 latent grid (checkerboards)")
        kw = dict(decoder_cfg)
        kind = kw.pop("kind", "refine")
        if kind not in DECODERS:
            raise ConfigError(f"perceptual.decoder.kind must be one of {sorted(DECODERS)}, got {kind!r}")
        model.autoencoder = DECODERS[kind].from_plain(ae, **kw)
    return model


class PerceptualRecipe(Recipe):
    ema_names = ("generator",)
    trains_on_pair_targets = True

    def __init__(self, cfg: dict, accelerator):
        super().__init__(cfg, accelerator)
        self.c = c = section(cfg, "perceptual", DEFAULTS)
        dev = accelerator.device
        self.degradation = cfg["data"].get("degradation", "bicubic")
        w = c["ldl_window"]
        if c["ldl_weight"] and not (isinstance(w, int) and w >= 3 and w % 2 == 1):
            raise ConfigError(f"perceptual.ldl_window must be an odd whole number of pixels, 3 or more "
                              f"(the paper uses 7), got {w!r}")
        self.model = load_start_model(cfg, c["decoder"], degrid=bool(c["degrid_sigma"])).to(dev)
        try:
            self.model.set_degrid(c["degrid_sigma"])
        except ValueError as e:
            raise ConfigError(f"perceptual.degrid_sigma: {e}") from None
        self.model.requires_grad_(False)
        self.model.unet.requires_grad_(bool(c["train_unet"])).train(bool(c["train_unet"]))
        ae = self.model.autoencoder
        if isinstance(ae, RefinedPixelShuffleAutoencoder):
            ae.refine.requires_grad_(True)
        elif isinstance(ae, ResizeConvAutoencoder):
            ae.residual.requires_grad_(True)
        elif isinstance(ae, KLAutoencoder):
            ae.vae.decoder.requires_grad_(True)
            if ae.vae.post_quant_conv is not None:
                ae.vae.post_quant_conv.requires_grad_(True)
        self.generator = OneStepGenerator(self.model)
        from upstep.degrade import pair_names

        pairs = pair_names(self.degradation)
        for key in ("usm_target", "teacher"):
            if pairs and c[key]:
                raise ConfigError(f"perceptual: data.degradation {pairs[0]!r} sets the target (a camera-like pair), "
                                  f"and so does perceptual.{key}; use one of them")
        self.teacher = None
        if c["teacher"]:
            if c["usm_target"]:
                raise ConfigError("perceptual: teacher and usm_target both set the L1 and feature target; "
                                  "set one of them")
            self.teacher = load_teacher(c["teacher"], self.model.scale).to(dev)
        self.feature_loss = None
        if c["feature_weight"]:
            from upstep.nn.feature_loss import FeatureLoss

            self.feature_loss = FeatureLoss(c["feature_net"], c["feature_taps"]).to(dev)
        self.disc = ProjectedDiscriminator(**c["disc"]).to(dev) if c["gan_weight"] else None
        self.trainable = {"generator": self.generator}
        t = cfg["train"]
        g_params = [p for p in self.generator.parameters() if p.requires_grad]
        self.optimizers = {"generator": torch.optim.Adam(g_params, lr=t["lr"], betas=(0.9, 0.99))}
        if self.disc is not None:
            self.trainable["disc"] = self.disc
            self.optimizers["disc"] = torch.optim.Adam(
                [{"params": [p for p in self.disc.parameters() if p.requires_grad], "lr_mult": c["disc_lr_mult"]}],
                lr=t["lr"] * c["disc_lr_mult"], betas=(0.0, 0.99))

    def generator_inputs(self, hr01: torch.Tensor, g: torch.Generator):
        """(z_l, eps, x_l, target): the LR's latent, the noise, the LR itself in [0, 1], and the
        pair's target in [0, 1] (``hr01``, or its camera-like softening: ``make_pair``)."""
        m = self.model
        target, lr = make_pair(hr01.cpu(), m.scale, self.degradation, g)
        target, lr = target.to(hr01.device), lr.to(hr01.device)
        with torch.no_grad():
            z_l = m.encode_cond(m.upsample_lr(lr * 2 - 1, hr01.shape[-2:]))
        eps = torch.randn(z_l.shape, generator=g).to(z_l.device, z_l.dtype)
        return z_l, eps, lr, target

    @torch.no_grad()
    def teacher_output(self, lr01: torch.Tensor, eps: torch.Tensor, size) -> torch.Tensor:
        """T(x_l, eps) in [-1, 1]: the teacher's one-step output on the student's LR and noise."""
        t = self.teacher.model
        z_l = t.encode_cond(t.upsample_lr(lr01 * 2 - 1, size))
        if z_l.shape != eps.shape:
            raise ConfigError(f"perceptual.teacher: its latent {tuple(z_l.shape[1:])} differs from the student's "
                              f"{tuple(eps.shape[1:])}; the two must share the noise, so use a teacher with the "
                              "same autoencoder")
        with self.accelerator.autocast():
            return self.teacher(z_l, eps.to(z_l.dtype)).float()

    def generator_loss(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict:
        c = self.c
        if c["usm_target"]:   # Real-ESRGAN: degrade and reconstruct USM(GT); D_H still sees the plain GT
            from upstep.degrade.usm import usm_sharpen

            z_l, eps, lr, target01 = self.generator_inputs(usm_sharpen(hr01), g)
            hr = hr01 * 2 - 1
        else:   # D_H sees the pair's target: the HR, or its camera-like softening (camera_pair; not with usm_target)
            z_l, eps, lr, target01 = self.generator_inputs(hr01, g)
            hr = target01 * 2 - 1
        target = target01 * 2 - 1 if self.teacher is None else self.teacher_output(lr, eps, hr01.shape[-2:])
        with self.accelerator.autocast():
            sr = self.wrapped["generator"](z_l, eps).float()
        zero = hr.new_zeros(())
        L = {"l1": (sr - target).abs().mean(),
             "feature": self.feature_loss(sr, target) if self.feature_loss is not None else zero, "g_adv": zero,
             "ldl": zero}
        if c["ldl_weight"]:
            from upstep.nn.ldl import ldl_loss

            with torch.no_grad(), self.accelerator.autocast():   # the EMA generator: LDL's stable reference
                sr_ema = self.emas["generator"].shadow(z_l, eps).float()
            L["ldl"] = ldl_loss((target + 1) / 2, (sr + 1) / 2, (sr_ema + 1) / 2, c["ldl_window"])
        use_gan = self.disc is not None and step >= c["gan_start"]
        if use_gan:
            self.disc.requires_grad_(False)        # the generator's term never updates D_H
            try:
                with self.accelerator.autocast():
                    L["g_adv"] = g_hinge_loss(self.wrapped["disc"](sr, generator=g))
            finally:   # a pretrained feature network holds buffers, not parameters: stays frozen
                self.disc.requires_grad_(True)
        L["generator"] = (c["l1_weight"] * L["l1"] + c["feature_weight"] * L["feature"]
                          + c["gan_weight"] * L["g_adv"] + c["ldl_weight"] * L["ldl"])
        return {"losses": L, "sr": sr, "hr": hr, "use_gan": use_gan}

    def train_step(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        out = self.generator_loss(step, hr01, g)
        L = out["losses"]
        self.backward_step(L["generator"], "generator", "generator")
        logs = {k: float(v.detach()) for k, v in L.items()}
        if out["use_gan"]:
            B = out["hr"].shape[0]
            with self.accelerator.autocast():
                logits = self.wrapped["disc"](torch.cat([out["hr"], out["sr"].detach()]), generator=g)
            d_loss = d_hinge_loss([l[:B] for l in logits], [l[B:] for l in logits])
            self.backward_step(d_loss, "disc", "disc")
            logs["d_loss"] = float(d_loss.detach())
        return {"loss": logs.pop("generator"), **logs}

    def export(self) -> SRDiffusionModel:
        gen = copy.deepcopy(self.generator).cpu()
        gen.load_state_dict(self.emas["generator"].state_dict())
        return gen.model.eval()

    @torch.no_grad()
    def validate(self, hr01: torch.Tensor) -> dict[str, float]:
        """1-step PSNR-Y of the EMA model on bicubic and on the training degradation, and for both
        the 4x4-grid energy of its output relative to the HR crops' (``upstep.metrics.periodic``)."""
        from upstep.metrics.periodic import grid_energy

        model = self.export().to(hr01.device)
        out = validate_models({"val_psnr": (model, 1)}, hr01, "bicubic")
        if self.degradation != "bicubic":
            deg = validate_models({"val_psnr_degraded": (model, 1)}, hr01, self.degradation)
            out.update(val_psnr_degraded=deg["val_psnr_degraded"], val_psnr_degraded_bicubic=deg["val_psnr_bicubic"])
        factor = getattr(model.autoencoder, "factor", 4)
        hr_energy = grid_energy(hr01, factor).mean()
        kinds = {"": "bicubic"} if self.degradation == "bicubic" else {"": "bicubic", "_degraded": self.degradation}
        for suffix, deg in kinds.items():   # the grain showed on realistic LR only (perceptual_x4_probe)
            lr = make_pair(hr01.cpu(), model.scale, deg, torch.Generator().manual_seed(12345))[1].to(hr01.device)
            sr = model.upscale_tensor(lr * 2 - 1, steps=1, generator=torch.Generator().manual_seed(54321))
            out[f"val_grid_energy_ratio{suffix}"] = float(grid_energy(((sr + 1) / 2).clamp(0, 1), factor).mean() / hr_energy)
        return out
