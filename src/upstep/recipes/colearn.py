"""Co-learning a one-step diffusion upsampler and a learnable downsampler (Kim & Kim, 2024/25).

Networks (Fig. 2): a frozen ResShift teacher (``cfg["teacher"]``, a model folder); the
one-step student f_theta, initialised from the teacher; the HR discriminator D_H (projected,
``upstep.nn.discriminators``); the learnable downsampler G (conv- or diffusion-based,
``upstep.nn.downsamplers``) and the LR discriminator D_L. Every network is updated once in
every training step.

One step, for a batch of HR crops (pixels in [-1, 1]; latents by the frozen autoencoder E):

    x_L = degrade(x_H);  x_0 = E(x_H);  y = E(bicubic(x_L))
    eps ~ N(0, I);  x_T = y + kappa sqrt(eta_T) eps                          (sampler start)
    x0_tea = Teacher_T(x_T, y)            deterministic T-step sampler, no grad  (eq. 1)
    x0_hat = f_theta(x_T, y, T)           the student's single step
    L_distill = || x0_hat - x0_tea ||^2                                          (eq. 2)
    L_H^G = -D_H(D(x0_hat))               D = decoder                             (eq. 4)
    x_L_hat = G(x0_hat, eps')             the student's output taken back to LR
    L_L^G = -D_L(x_L_hat)                                                       (eq. 6)
    student:     L_f = L_denoise + w_t (L_distill + l_H L_H^G + l_L L_L^G)       (eq. 7)
    downsampler: L_G = L_G,denoise + w_t L_L^G                                   (eq. 8)
    D_H:  relu(1 - D_H(x_H)) + relu(1 + D_H(D(x0_hat)))                          (eq. 3)
    D_L:  relu(1 - D_L(x_L)) + relu(1 + D_L(x_L_hat))                            (eq. 5)

What "denoise" is (the seed leaves it implicit; our choice, and why):
* student, ``L_denoise``: ResShift's own x_0-prediction loss on the *real* pair,
  ``|| f_theta(x_t, y, t) - x_0 ||^2`` with x_t from the forward process. By default at
  t = T (``colearn.denoise_t = "terminal"``), the one time a one-step student is evaluated:
  there it is SinSR's ground-truth anchor, letting the student correct the teacher where the
  teacher is wrong instead of only copying it; ``"uniform"`` (t ~ U{1..T}, the teacher's
  training loss) keeps the student a full diffusion model but spends capacity on times a
  one-step model never visits (DESIGN.md's observation for the v-models).
* downsampler, ``L_G,denoise``: the same supervised term for G on the real pair —
  ``|| G(x_0, eps'') - x_L ||^2`` maps the real HR to the real LR the degradation made. D_L is
  unconditional, so without it G could output any realistic LR unrelated to its input.
* ``w_t``: the weight of the auxiliary terms at training iteration t: ``w`` ramped linearly
  from 0 over ``w_ramp_steps`` (0 = constant ``w``, the plain form), so the adversarial terms
  start once the freshly initialised discriminators carry information. ``l_H``, ``l_L`` scale
  the two adversarial terms against the MSEs.

Ablation switches (Table IV arms are configs): ``use_hr_disc``, ``use_lr_disc``,
``downsampler: "conv" | "diffusion"`` (used when ``use_lr_disc``), ``use_distill``,
``use_denoise``.

Gradients: eq. 7 and eq. 8 are minimised by ONE backward pass of L_f + L_G,denoise: L_distill,
L_H^G and L_denoise do not depend on G, L_G,denoise does not depend on f_theta, and w_t L_L^G
depends on both — so f_theta receives exactly dL_f and G exactly dL_G. The discriminators are
frozen (``requires_grad`` off) during that pass and trained on detached fakes afterwards.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from upstep.diffusion.resshift import ddim_sample, sample_timesteps
from upstep.diffusion.resshift_model import ResShiftSRModel
from upstep.errors import ConfigError
from upstep.model import load_model
from upstep.nn.discriminators import build_discriminator, d_hinge_loss, g_hinge_loss
from upstep.nn.downsamplers import DiffusionDownsampler, build_downsampler
from upstep.recipes.base import Recipe
from upstep.recipes.base import validate_models
from upstep.recipes.resshift_teacher import encode_pair

DEFAULTS = {
    "use_distill": True, "use_denoise": True, "use_hr_disc": True, "use_lr_disc": True,
    "downsampler": "diffusion", "denoise_t": "terminal",
    "w": 1.0, "w_ramp_steps": 0, "lambda_hr": 0.1, "lambda_lr": 0.1,
    "disc_lr_mult": 1.0, "downsampler_lr_mult": 1.0,
    "hr_disc": {"channels": [32, 64, 128]},
    "lr_disc": {"channels": 32, "n_down": 2},
    "conv_downsampler": {"channels": 32},
    "diffusion_downsampler": {},  # {"unet": {...}}; default: the student's U-Net architecture
}


def colearn_settings(cfg: dict) -> dict:
    c = {**DEFAULTS, **cfg.get("colearn", {})}
    unknown = set(cfg.get("colearn", {})) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"colearn: unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    if c["use_lr_disc"] and c["downsampler"] not in ("conv", "diffusion"):
        raise ConfigError(f"colearn.downsampler must be 'conv' or 'diffusion', got {c['downsampler']!r}")
    if not (c["use_distill"] or c["use_denoise"] or c["use_hr_disc"] or c["use_lr_disc"]):
        raise ConfigError("colearn: every loss is switched off; enable at least one of use_distill, "
                          "use_denoise, use_hr_disc, use_lr_disc")
    if c["denoise_t"] not in ("terminal", "uniform"):
        raise ConfigError(f"colearn.denoise_t must be 'terminal' or 'uniform', got {c['denoise_t']!r}")
    return c


def load_teacher(path: str | Path, device) -> ResShiftSRModel:
    if not path:
        raise ConfigError("colearn: set `teacher` to a trained ResShift model folder "
                          "(e.g. `upstep train configs/resshift_teacher_tiny.json --run-dir runs/teacher`, then `runs/teacher/model`)")
    from upstep.api import resolve_model

    teacher = load_model(resolve_model(path))    # a model folder, a run folder (its model/) or a shipped name
    if not isinstance(teacher, ResShiftSRModel):
        raise ConfigError(f"colearn: teacher {path} is a {teacher.kind!r} model, not a ResShift one; train one with "
                          "a resshift_teacher config and give its run folder")
    return teacher.to(device).eval().requires_grad_(False)


class CoLearnRecipe(Recipe):
    ema_names = ("student",)

    def __init__(self, cfg: dict, accelerator):
        super().__init__(cfg, accelerator)
        self.c = c = colearn_settings(cfg)
        dev = accelerator.device
        self.degradation = cfg["data"].get("degradation", "bicubic")
        self.teacher = load_teacher(cfg.get("teacher"), dev)
        if self.teacher.scale != cfg["data"]["scale"]:
            raise ConfigError(f"teacher is x{self.teacher.scale}, config data.scale is x{cfg['data']['scale']}")
        # the student: the teacher's architecture and weights, sampled in one step
        self.student = copy.deepcopy(self.teacher).requires_grad_(True)
        self.student.default_steps = 1
        self.student.autoencoder.requires_grad_(False)
        self.student.train()
        self.T = self.teacher.schedule.T

        self.trainable = {"student": self.student.unet}
        self.optimizers = {"student": self._adamw(self.student.unet, 1.0)}
        self.d_hr = self.g = self.d_lr = None
        if c["use_hr_disc"]:
            self.d_hr = build_discriminator("projected", c["hr_disc"]).to(dev)
            self.trainable["d_hr"] = self.d_hr
            self.optimizers["d_hr"] = self._adam_gan(self.d_hr, c["disc_lr_mult"])
        if c["use_lr_disc"]:
            if c["downsampler"] == "conv":
                gcfg = {"scale": self.teacher.scale, **c["conv_downsampler"]}
            else:  # the student's architecture unless configured otherwise
                gcfg = {"unet": c["diffusion_downsampler"].get("unet", self.teacher.unet.config())}
            self.g = build_downsampler(c["downsampler"], gcfg).to(dev)
            self.d_lr = build_discriminator("patch", c["lr_disc"]).to(dev)
            self.trainable["downsampler"] = self.g
            self.trainable["d_lr"] = self.d_lr
            self.optimizers["downsampler"] = self._adamw(self.g, c["downsampler_lr_mult"])
            self.optimizers["d_lr"] = self._adam_gan(self.d_lr, c["disc_lr_mult"])

    # ---- optimisers: AdamW for the generators, Adam(0, 0.99) for the discriminators ----
    def _adamw(self, module, lr_mult: float):
        t = self.cfg["train"]
        return torch.optim.AdamW([{"params": list(module.parameters()), "lr_mult": lr_mult}],
                                 lr=t["lr"] * lr_mult, weight_decay=t.get("weight_decay", 0.0))

    def _adam_gan(self, module, lr_mult: float):
        return torch.optim.Adam([{"params": list(module.parameters()), "lr_mult": lr_mult}],
                                lr=self.cfg["train"]["lr"] * lr_mult, betas=(0.0, 0.99))

    # ---- pieces of the step ------------------------------------------------------------
    def w_t(self, step: int) -> float:
        ramp = self.c["w_ramp_steps"]
        return self.c["w"] * (min(1.0, (step + 1) / ramp) if ramp else 1.0)

    @torch.no_grad()
    def teacher_target(self, x_T: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """eq. 1: the teacher's deterministic T-step map x_T -> x_0 (SinSR sampler)."""
        return ddim_sample(self.teacher.predict_x0, x_T, y, self.teacher.schedule, self.T)

    def downsample(self, g, x0: torch.Tensor, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """G: an HR latent (diffusion G) or its decoded pixels (conv G) -> LR pixels [-1, 1]."""
        if isinstance(self.g, DiffusionDownsampler):
            eps_prime = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
            return DiffusionDownsampler.to_lr_pixels(g(x0, eps_prime), self.student.autoencoder.decode,
                                                     self.student.scale)
        return g(hr)

    def set_discriminators_trainable(self, flag: bool) -> None:
        for d in (self.d_hr, self.d_lr):
            if d is not None:
                d.requires_grad_(flag)

    def _step(self, loss: torch.Tensor, names: list[str]) -> None:
        for n in names:
            self.optimizers[n].zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        clip = self.cfg["train"].get("grad_clip")
        for n in names:
            if clip:
                # Unscale (fp16) only this optimizer's gradients: ``accelerator.clip_grad_norm_``
                # unscales EVERY prepared optimizer, and each optimizer step calls the scaler's
                # update(), so the next optimizer of this backward would be unscaled twice.
                self.accelerator.unscale_gradients(optimizer=self.optimizers[n])
                torch.nn.utils.clip_grad_norm_(self.wrapped[n].parameters(), clip)
            self.optimizers[n].step()

    # ---- the algorithm -----------------------------------------------------------------
    def generator_losses(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict:
        """Everything of one step up to the generator-side update; returns the loss terms and
        the tensors the discriminator update needs (``sr``, ``lr_fake``, ``hr``, ``lr``)."""
        c, T, sched = self.c, self.T, self.student.schedule
        x0, y, hr, lr = encode_pair(self.student, hr01, self.degradation, g)
        B = x0.shape[0]
        eps = torch.randn(x0.shape, generator=g).to(x0.device)
        x_T = sched.prior_sample(y, eps)                              # x_T = y + kappa sqrt(eta_T) eps
        x0_tea = self.teacher_target(x_T, y) if c["use_distill"] else None      # eq. 1

        # the student's one step at t = T and, in the same batch, its denoising loss input
        t_T = torch.full((B,), T, dtype=torch.long, device=x0.device)
        x_in, y_in, t_in = x_T, y, t_T
        if c["use_denoise"]:
            t_d = t_T if c["denoise_t"] == "terminal" else sample_timesteps(B, T, g).to(x0.device)
            x_t = sched.q_sample(x0, y, t_d, torch.randn(x0.shape, generator=g).to(x0.device))
            x_in, y_in, t_in = torch.cat([x_T, x_t]), torch.cat([y, y]), torch.cat([t_T, t_d])
        with self.accelerator.autocast():
            pred = self.student.predict_x0(x_in, y_in, t_in, unet=self.wrapped["student"]).float()
        x0_hat = pred[:B]                                             # the one-step SR latent
        zero = x0.new_zeros(())
        L = {"denoise": (pred[B:] - x0).pow(2).mean() if c["use_denoise"] else zero,
             "distill": (x0_hat - x0_tea).pow(2).mean() if c["use_distill"] else zero,   # eq. 2
             "hr_g": zero, "lr_g": zero, "g_denoise": zero}
        sr = self.student.autoencoder.decode(x0_hat)                  # student output, HR pixels

        lr_fake = None
        self.set_discriminators_trainable(False)  # generator-side terms never update D_H / D_L
        try:
            with self.accelerator.autocast():
                if c["use_hr_disc"]:
                    L["hr_g"] = g_hinge_loss(self.wrapped["d_hr"](sr))                    # eq. 4
                if c["use_lr_disc"]:
                    G = self.wrapped["downsampler"]
                    # G on the student's output (adversarial) and on the real HR (its denoise term)
                    both = self.downsample(G, torch.cat([x0_hat, x0]), torch.cat([sr, hr]), g).float()
                    lr_fake, lr_from_real = both[:B], both[B:]
                    L["lr_g"] = g_hinge_loss(self.wrapped["d_lr"](lr_fake))               # eq. 6
                    L["g_denoise"] = (lr_from_real - lr).pow(2).mean()
        finally:
            self.set_discriminators_trainable(True)

        w = self.w_t(step)
        aux = L["distill"] + c["lambda_hr"] * L["hr_g"] + c["lambda_lr"] * L["lr_g"]
        L["student"] = L["denoise"] + w * aux                                              # eq. 7
        L["downsampler"] = L["g_denoise"] + w * c["lambda_lr"] * L["lr_g"]                # eq. 8
        # one backward gives f_theta dL_f/dtheta and G dL_G/dG (see the module docstring)
        L["total_generators"] = L["student"] + L["g_denoise"]
        return {"losses": L, "sr": sr, "lr_fake": lr_fake, "hr": hr, "lr": lr, "w": w}

    def discriminator_losses(self, out: dict) -> dict[str, torch.Tensor]:
        L = {}
        with self.accelerator.autocast():
            if self.d_hr is not None:                                                       # eq. 3
                B = out["hr"].shape[0]
                logits = self.wrapped["d_hr"](torch.cat([out["hr"], out["sr"].detach()]))
                L["d_hr"] = d_hinge_loss([l[:B] for l in logits], [l[B:] for l in logits])
            if self.d_lr is not None:                                                       # eq. 5
                B = out["lr"].shape[0]
                logits = self.wrapped["d_lr"](torch.cat([out["lr"], out["lr_fake"].detach()]))
                L["d_lr"] = d_hinge_loss([l[:B] for l in logits], [l[B:] for l in logits])
        return L

    def train_step(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        out = self.generator_losses(step, hr01, g)
        L = out["losses"]
        gen_names = ["student"] + (["downsampler"] if self.g is not None else [])
        self._step(L["total_generators"], gen_names)              # eq. 7 (student), eq. 8 (G)
        D = self.discriminator_losses(out)
        if D:
            self._step(sum(D.values()), [n for n in ("d_hr", "d_lr") if n in D])   # eq. 3, eq. 5
        logs = {"loss": L["student"].item(), "distill": L["distill"].item(),
                "denoise": L["denoise"].item(), "w_t": out["w"]}
        if self.d_hr is not None:
            logs.update(hr_g=L["hr_g"].item(), d_hr=D["d_hr"].item())
        if self.g is not None:
            logs.update(lr_g=L["lr_g"].item(), g_denoise=L["g_denoise"].item(),
                        downsampler=L["downsampler"].item(), d_lr=D["d_lr"].item())
        return logs

    # ---- export / validation -----------------------------------------------------------
    def export(self) -> ResShiftSRModel:
        """The student as a one-step ResShift model (EMA weights)."""
        out = copy.deepcopy(self.student).cpu()
        out.unet.load_state_dict(self.emas["student"].state_dict())
        out.default_steps = 1
        return out.eval().requires_grad_(False)

    def validate(self, hr01: torch.Tensor) -> dict[str, float]:
        return validate_models({"val_psnr": (self.export().to(hr01.device), 1),
                                  "val_psnr_teacher": (self.teacher, self.T)}, hr01, self.degradation)
