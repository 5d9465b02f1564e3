"""YONOS-SR decoder fine-tuning (Noroozi et al. §3.3).

The one-step SR model's latents are not exactly the encoder's latents of HR images, so the
decoder is fine-tuned on what it will actually decode. The U-Net and the encoder stay frozen;
for an HR crop x_h (pixels in [-1, 1]):

    x_l = degrade(x_h, s);  z_l = E(bicubic(x_l))
    z   = DDIM_1(eps; z_l)  = from_target(z0_hat(eps, z_l, t = 1), z_l),  eps ~ N(0, I)   (no grad)
    x_hat = D(z)                                             the decoder, the only thing trained

with the latent-diffusion autoencoder loss (L1 + perceptual + patch GAN, Esser et al. 2021):

    L_rec = |x_h - x_hat|_1 + w_p L_feat(x_h, x_hat)         (EfficientNet-Lite0 features, as in
                                                             the ``autoencoder`` recipe: not LPIPS-alex)
    L_G   = -E[Disc(x_hat)]                                  (hinge, generator side)
    lambda = ||grad_{D_L} L_rec|| / (||grad_{D_L} L_G|| + 1e-4),  clamped to [0, 1e4]   (VQGAN eq. 7)
    L_dec = L_rec + w_d * lambda * L_G                       (the GAN terms from step ``disc_start`` on)
    L_Disc = 1/2 (E[relu(1 - Disc(x_h))] + E[relu(1 + Disc(x_hat))])

D_L is the decoder's last layer (``conv_out``), Disc the PatchGAN of ``upstep.nn.patchgan``.
Disc sees real and fake images in separate forward passes, as in taming-transformers: with a
BatchNorm discriminator (the default) each batch is normalised by its own statistics, so the
fake logits L_Disc trains on are exactly the ones L_G pushes (a single real+fake batch would
normalise fakes with mixed statistics in L_Disc and fake-only ones in L_G).
Only a learned KL autoencoder has a decoder to fine-tune: a pixel-unshuffle model is refused.

Config::

    "recipe": "decoder_finetune",
    "init_from": "runs/x8/model",          the one-step SR model (or model.init_from / --init-from)
    "decoder_finetune": {"perceptual_weight": 0.1, "disc_weight": 0.5, "disc_start": 0,
                         "disc": {"channels": 64, "n_layers": 3, "norm": "batch"},
                         "disc_lr_mult": 1.0, "sample_steps": 1}

The exported model is the input model with the fine-tuned decoder (no EMA, as in the
latent-diffusion autoencoder training), saved like any other so ``upstep upscale`` uses it.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from upstep.errors import ConfigError
from upstep.model import SRDiffusionModel, load_model
from upstep.nn.autoencoders import KLAutoencoder
from upstep.nn.patchgan import NLayerDiscriminator, adaptive_gan_weight, hinge_d_loss, hinge_g_loss
from upstep.recipes.autoencoder import perceptual_loss, section
from upstep.recipes.base import Recipe, make_lr

DEFAULTS = {"perceptual_weight": 0.1, "disc_weight": 0.5, "disc_start": 0, "disc_lr_mult": 1.0,
            "disc": {"channels": 64, "n_layers": 3, "norm": "batch"}, "sample_steps": 1}


class KLDecoder(nn.Module):
    """The trainable decoding path of a KL autoencoder (post-quant conv + decoder), sharing its
    parameters: ``KLDecoder(ae)(z) == ae.decode(z)``."""

    def __init__(self, ae: KLAutoencoder):
        super().__init__()
        self.post_quant_conv = ae.vae.post_quant_conv
        self.decoder = ae.vae.decoder
        self.scaling = ae.scaling

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z / self.scaling
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


def load_one_step_model(cfg: dict, device) -> SRDiffusionModel:
    path = cfg.get("init_from") or cfg.get("model", {}).get("init_from")
    if not path:
        raise ConfigError("decoder_finetune: set `init_from` to the trained one-step model folder")
    model = load_model(path)
    if not isinstance(model, SRDiffusionModel):
        raise ConfigError(f"decoder_finetune: {path} is a {model.kind!r} model, not 'vdiffusion'")
    if not isinstance(model.autoencoder, KLAutoencoder):
        kind = model.autoencoder.config().get("kind")
        raise ConfigError(f"decoder_finetune: {path} uses the {kind!r} autoencoder, which has no learned "
                          "decoder; decoder fine-tuning needs a KL autoencoder (train one with the "
                          "`autoencoder` recipe), or use the `perceptual` recipe with perceptual.train_unet "
                          "false, which gives a pixel-unshuffle model a learnable decoder)")
    scale = cfg.get("data", {}).get("scale")
    if scale is not None and int(scale) != model.scale:
        raise ConfigError(f"decoder_finetune: data.scale is x{scale} but {path} is a x{model.scale} model")
    return model.to(device)


class DecoderFinetuneRecipe(Recipe):
    def __init__(self, cfg: dict, accelerator):
        super().__init__(cfg, accelerator)
        self.c = c = section(cfg, "decoder_finetune", DEFAULTS)
        dev = accelerator.device
        self.model = load_one_step_model(cfg, dev)
        self.model.requires_grad_(False).eval()               # U-Net and encoder: frozen
        self.decoder = KLDecoder(self.model.autoencoder)
        self.decoder.requires_grad_(True).train()             # ... the decoder is trained
        self.perceptual = perceptual_loss(c["perceptual_weight"], "decoder_finetune.perceptual_weight", dev)
        self.disc = NLayerDiscriminator(**{"in_channels": 3, **c["disc"]}).to(dev)
        self.trainable = {"decoder": self.decoder, "disc": self.disc}
        lr = cfg["train"]["lr"]
        self.optimizers = {   # Adam(0.5, 0.9) for both, as in the latent-diffusion autoencoders
            "decoder": torch.optim.Adam(self.decoder.parameters(), lr=lr, betas=(0.5, 0.9)),
            "disc": torch.optim.Adam([{"params": list(self.disc.parameters()), "lr_mult": c["disc_lr_mult"]}],
                                     lr=lr * c["disc_lr_mult"], betas=(0.5, 0.9)),
        }

    @torch.no_grad()
    def one_step_latent(self, hr01: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """z = the SR model's latent for the LR of ``hr01``, ONE DDIM step from pure noise."""
        m = self.model
        lr = make_lr(hr01.cpu(), m.scale, self.cfg["data"].get("degradation", "bicubic"), g).to(hr01.device)
        lr_up = m.upsample_lr(lr * 2 - 1, hr01.shape[-2:])
        z_l = m.encode_cond(lr_up)
        noise = torch.randn(m.latent_shape(lr_up), generator=g).to(z_l.device, z_l.dtype)
        return m.sample_latent(z_l, noise, steps=self.c["sample_steps"])

    def train_step(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        c = self.c
        hr = hr01 * 2 - 1
        z = self.one_step_latent(hr01, g)
        with self.accelerator.autocast():
            x_hat = self.wrapped["decoder"](z).float()
        l1 = (x_hat - hr).abs().mean()
        perc = self.perceptual(x_hat, hr) if self.perceptual is not None else hr.new_zeros(())
        rec = l1 + c["perceptual_weight"] * perc                                   # L_rec
        logs = {"l1": l1.item(), "perceptual": perc.item()}
        use_gan = step >= c["disc_start"] and c["disc_weight"] > 0
        if use_gan:
            self.disc.requires_grad_(False)        # the generator-side term never updates Disc
            with self.accelerator.autocast():
                g_loss = hinge_g_loss(self.wrapped["disc"](x_hat))                 # L_G
            self.disc.requires_grad_(True)
            lam = adaptive_gan_weight(rec, g_loss, self.decoder.last_layer)        # VQGAN eq. 7
            loss = rec + c["disc_weight"] * lam * g_loss
            logs.update(g_loss=g_loss.item(), gan_lambda=lam.item())
        else:
            loss = rec
        self.backward_step(loss, "decoder", "decoder")
        if use_gan:
            with self.accelerator.autocast():          # L_Disc; real and fake in separate passes
                logits_real = self.wrapped["disc"](hr)
                logits_fake = self.wrapped["disc"](x_hat.detach())
            d_loss = hinge_d_loss(logits_real, logits_fake)
            self.backward_step(d_loss, "disc", "disc")
            logs["d_loss"] = d_loss.item()
        return {"loss": loss.item(), **logs}

    def export(self) -> SRDiffusionModel:
        return copy.deepcopy(self.model).cpu().eval()

    def validate(self, hr01: torch.Tensor) -> dict[str, float]:
        return self.validate_model(self.export().to(hr01.device), hr01)
