"""Standard latent-diffusion SR training — YONOS-SR eq. 2.

For an HR crop x_h: make the LR (configured degradation), upscale it bicubically to the
HR size, encode both: z_h, z_l. Diffuse the target z_0 (z_h, or z_h - z_l for the residual
form) to z_t = alpha_t z_0 + sigma_t eps, predict v from concat(z_t, z_l), and minimise

    E_t,eps [ omega(lambda_t) * || z0_hat(z_t, z_l, lambda_t) - z_0 ||^2 ],   omega = 1 + alpha^2 / sigma^2.

The autoencoder is frozen (a KL autoencoder is trained beforehand by the ``autoencoder``
recipe; the pixel-unshuffle one has no parameters).
"""
from __future__ import annotations

import copy

import torch

from upstep.diffusion.schedule import sample_t
from upstep.recipes.base import Recipe, build_sr_model, make_pair


def diffusion_loss(model, z0: torch.Tensor, z_l: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                   unet=None, target_z0: torch.Tensor | None = None) -> torch.Tensor:
    """omega-weighted z0 error (eq. 2; eq. 3 when ``target_z0`` is a teacher's prediction)."""
    sched = model.schedule
    z_t = sched.add_noise(z0, eps, t)
    v_hat = (unet or model.unet)(z_t, z_l, t)
    z0_hat = sched.z0_from_v(z_t, v_hat.float(), t)
    target = z0 if target_z0 is None else target_z0
    per_sample = (z0_hat - target).pow(2).flatten(1).mean(1)
    return (sched.omega(t) * per_sample).mean()


class StandardRecipe(Recipe):
    ema_names = ("unet",)
    trains_on_pair_targets = True

    def __init__(self, cfg: dict, accelerator):
        super().__init__(cfg, accelerator)
        self.model = build_sr_model(cfg).to(accelerator.device)
        self.model.autoencoder.requires_grad_(False).eval()
        self.trainable = {"unet": self.model.unet}
        tcfg = cfg["train"]
        self.optimizers = {"unet": torch.optim.AdamW(self.model.unet.parameters(), lr=tcfg["lr"],
                                                     weight_decay=tcfg.get("weight_decay", 0.0))}

    def encode_pair(self, hr01: torch.Tensor, scale: int, g: torch.Generator):
        """(z_h, z_l): latents of the pair's target (the HR, or its camera-like softening) and LR."""
        target, lr = make_pair(hr01.cpu(), scale, self.cfg["data"].get("degradation", "bicubic"), g)
        lr_up = self.model.upsample_lr(lr.to(hr01.device) * 2 - 1, hr01.shape[-2:])
        with torch.no_grad():
            ae = self.model.autoencoder
            return (self.encode_frozen(ae, target.to(hr01.device) * 2 - 1),
                    self.encode_frozen(ae, lr_up, self.model.encode_cond))

    def frozen_latents(self, hr01: torch.Tensor, g: torch.Generator):
        return self.encode_pair(hr01, self.model.scale, g)

    def train_step(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        z_h, z_l = self.encode_pair(hr01, self.model.scale, g)
        z0 = self.model.to_target(z_h, z_l)
        t = sample_t(z0.shape[0], p_terminal=self.cfg["train"].get("p_terminal", 0.0), generator=g).to(z0.device)
        eps = torch.randn(z0.shape, generator=g).to(z0.device)
        with self.accelerator.autocast():
            loss = diffusion_loss(self.model, z0, z_l, t, eps, unet=self.wrapped["unet"])
        self.backward_step(loss, "unet", "unet")
        return {"loss": loss.item()}

    def export(self):
        out = copy.deepcopy(self.model).cpu()
        out.unet.load_state_dict(self.emas["unet"].state_dict())
        return out.eval()

    def validate(self, hr01: torch.Tensor) -> dict[str, float]:
        return self.validate_model(self.export().to(hr01.device), hr01)
