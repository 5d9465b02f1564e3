"""YONOS-SR scale distillation (Noroozi et al., Alg. 1, eq. 3) and the ×2 → ×4 → ×8 chain.

Alg. 1, for the scales S = [s_1 < s_2 < ...]: train the s_1 model on raw data (eq. 2, the
``standard`` recipe); for every next scale s, initialise the student theta from the previous
model phi, freeze phi as the teacher, and train theta with

    for an HR crop x_h:
        x_l  = degrade(x_h, s)      student input,  z_l  = E(bicubic(x_l))
        x_l' = degrade(x_h, s')     teacher input,  z_l' = E(bicubic(x_l'))    (s' = previous scale)
        t ~ U[0, 1],  eps ~ N(0, I),  z_t = alpha_t z_h + sigma_t eps          (the SAME z_t)
        L = omega(lambda_t) || z0_hat_theta(z_t, z_l, lambda_t) - z0_hat_phi(z_t, z_l', lambda_t) ||^2   (eq. 3)

with omega(lambda) = 1 + alpha^2 / sigma^2 (eq. 2's weight). Both LR images come from the same
HR crop with the same degradation pipeline (``data.degradation``) and the same random draw of it
(same blur kernel, noise level, JPEG quality...; only the scale differs).

Frames (``target: "residual"``). Our models may diffuse the residual r = z_h - z_l instead of
z_h (``SRDiffusionModel.to_target``); the student's z_l and the teacher's z_l' differ, so each
model has its own frame. The noisy latent of the paper, x_t = alpha_t z_h + sigma_t eps, is the
frame-free quantity; in a model's frame it reads ``to_target(x_t, alpha_t z_l)``::

    z_t^theta = alpha_t (z_h - z_l)  + sigma_t eps = x_t - alpha_t z_l       (student input)
    z_t^phi   = alpha_t (z_h - z_l') + sigma_t eps = x_t - alpha_t z_l'      (teacher input)

i.e. both networks see the SAME noisy HR latent x_t and the same eps, each in its own frame
(they coincide exactly at t = 1, the point a one-step sampler uses, and for ``target:
"latent"``, where this is the paper's form verbatim). The teacher predicts a residual in its
frame; the student's target is that prediction carried to the student's frame::

    z_h_hat^phi = from_target(z0_hat^phi, z_l')          = z0_hat^phi + z_l'
    target^theta = to_target(z_h_hat^phi, z_l)            = z0_hat^phi + z_l' - z_l

and ``|| z0_hat^theta - target^theta ||^2 = || (z0_hat^theta + z_l) - z_h_hat^phi ||^2`` is eq. 3's
error between clean-latent predictions. ``distill.teacher_z_t = "same"`` instead feeds the
teacher the student's z_t^theta literally (off the teacher's training distribution by
alpha_t (z_l' - z_l) for 0 < t < 1) — kept for the ablation.

Config::

    "recipe": "scale_distill",
    "data": {"scale": 4, ...},                        the student's scale s
    "distill": {"teacher": "runs/x2/model",           a trained vdiffusion model folder (phi)
                "teacher_scale": 2,                   s' (checked against the teacher; optional)
                "teacher_z_t": "aligned"}             or "same" (see above)
    "train": {..., "p_terminal": 0.5}                 t-sampling as in the standard recipe

The chain (``run_chain``, or ``upstep train`` on a config ``{"recipe": "yonos_chain",
"stages": [cfg_x2, cfg_x4, cfg_x8], "defaults": {...}}``, ``defaults`` being settings every stage
shares) trains stage k with stage k-1's exported model as the teacher, skipping finished
stages, so an interrupted chain restarts where it stopped.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from upstep.diffusion.schedule import sample_t
from upstep.errors import ConfigError
from upstep.model import SRDiffusionModel, load_model, save_json
from upstep.recipes.base import Recipe, make_lr
from upstep.recipes.standard import StandardRecipe, diffusion_loss

DEFAULTS = {"teacher": None, "teacher_scale": None, "teacher_z_t": "aligned"}


def distill_settings(cfg: dict) -> dict:
    given = cfg.get("distill", {})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"distill: unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **given}
    if not c["teacher"]:
        raise ConfigError("scale_distill: set distill.teacher to the previous scale's model folder "
                          "(e.g. runs/x2/model), or train the scales as a `yonos_chain` config")
    if c["teacher_z_t"] not in ("aligned", "same"):
        raise ConfigError(f"distill.teacher_z_t must be 'aligned' or 'same', got {c['teacher_z_t']!r}")
    return c


def load_teacher(path: str | Path, device) -> SRDiffusionModel:
    """phi: frozen — no gradients, eval mode, never EMA'd or checkpointed. ``path``: a model
    folder or a shipped model's name."""
    from upstep.api import resolve_model

    teacher = load_model(resolve_model(path))
    if not isinstance(teacher, SRDiffusionModel):
        raise ConfigError(f"scale_distill: teacher {path} is a {teacher.kind!r} model, not 'vdiffusion'")
    return teacher.to(device).eval().requires_grad_(False)


class ScaleDistillRecipe(StandardRecipe):
    """The student is an ``SRDiffusionModel`` exactly like the standard recipe's (its ``export``
    and ``validate`` are inherited); only its initialisation and its target differ."""

    trains_on_pair_targets = False   # its two LR views come from make_lr: the HR stays the target

    def __init__(self, cfg: dict, accelerator):
        Recipe.__init__(self, cfg, accelerator)  # not StandardRecipe's: the student is not built from `model`
        self.d = d = distill_settings(cfg)
        dev = accelerator.device
        self.teacher = load_teacher(d["teacher"], dev)
        if d["teacher_scale"] is not None and int(d["teacher_scale"]) != self.teacher.scale:
            raise ConfigError(f"distill.teacher_scale is x{d['teacher_scale']} but the teacher "
                              f"{d['teacher']} is a x{self.teacher.scale} model")
        # theta <- phi (Alg. 1), then it becomes a model of the student's scale: `scale` is what
        # `config()` writes, so the exported model says x{s}.
        self.model = copy.deepcopy(self.teacher)
        self.model.scale = int(cfg["data"]["scale"])
        self.model.unet.requires_grad_(True).train()
        self.model.autoencoder.requires_grad_(False).eval()
        self.trainable = {"unet": self.model.unet}
        tcfg = cfg["train"]
        self.optimizers = {"unet": torch.optim.AdamW(self.model.unet.parameters(), lr=tcfg["lr"],
                                                     weight_decay=tcfg.get("weight_decay", 0.0))}

    def frozen_latents(self, hr01: torch.Tensor, g: torch.Generator):
        return self.encode_views(hr01, g)

    @torch.no_grad()
    def encode_views(self, hr01: torch.Tensor, g: torch.Generator):
        """z_h, the student's z_l (scale s) and the teacher's z_l' (scale s') of one HR crop."""
        deg = self.cfg["data"].get("degradation", "bicubic")
        hr_size = hr01.shape[-2:]
        # one degradation draw for both views: the teacher's starts from the student's generator
        # state (every pipeline's draws are size-independent, so the parameters coincide)
        g_teacher = torch.Generator().set_state(g.get_state())
        lr_s = make_lr(hr01.cpu(), self.model.scale, deg, g).to(hr01.device)
        lr_t = make_lr(hr01.cpu(), self.teacher.scale, deg, g_teacher).to(hr01.device)
        ae = self.model.autoencoder   # the teacher's frozen copy: the same weights
        z_h = self.encode_frozen(ae, hr01 * 2 - 1)
        z_l = self.encode_frozen(ae, self.model.upsample_lr(lr_s * 2 - 1, hr_size), self.model.encode_cond)
        z_l_t = self.encode_frozen(self.teacher.autoencoder, self.teacher.upsample_lr(lr_t * 2 - 1, hr_size),
                                   self.teacher.encode_cond)
        return z_h, z_l, z_l_t

    @torch.no_grad()
    def teacher_target(self, z_h, z_l, z_l_t, t, eps) -> torch.Tensor:
        """The student-frame target of eq. 3: to_target(from_target(z0_hat^phi, z_l'), z_l)."""
        sched = self.teacher.schedule
        if self.d["teacher_z_t"] == "aligned":   # the same x_t = alpha z_h + sigma eps, teacher's frame
            z_t_teacher = sched.add_noise(self.teacher.to_target(z_h, z_l_t), eps, t)
        else:                                    # literally the student's z_t
            z_t_teacher = sched.add_noise(self.model.to_target(z_h, z_l), eps, t)
        with self.accelerator.autocast():
            z0_hat_t = self.teacher.predict_z0(z_t_teacher, z_l_t, t).float()
        z_h_hat = self.teacher.from_target(z0_hat_t, z_l_t)       # the teacher's clean latent
        return self.model.to_target(z_h_hat, z_l)                  # ... in the student's frame

    def distill_batch(self, hr01: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Everything eq. 3 needs for one batch (no network of the student evaluated yet)."""
        z_h, z_l, z_l_t = self.encode_views(hr01, g)
        z0 = self.model.to_target(z_h, z_l)                                     # student frame
        t = sample_t(z0.shape[0], p_terminal=self.cfg["train"].get("p_terminal", 0.0), generator=g).to(z0.device)
        eps = torch.randn(z0.shape, generator=g).to(z0.device)
        target = self.teacher_target(z_h, z_l, z_l_t, t, eps)
        return {"z0": z0, "z_l": z_l, "z_l_teacher": z_l_t, "t": t, "eps": eps, "target": target}

    def train_step(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        b = self.distill_batch(hr01, g)
        with self.accelerator.autocast():   # eq. 3: omega(lambda_t) || z0_hat^theta - target ||^2
            loss = diffusion_loss(self.model, b["z0"], b["z_l"], b["t"], b["eps"], unet=self.wrapped["unet"],
                                  target_z0=b["target"])
        self.backward_step(loss, "unet", "unet")
        # logged for reference: how far the teacher's target is from the ground truth
        return {"loss": loss.item(), "teacher_err": (b["target"] - b["z0"]).pow(2).mean().item()}


# ---- the chain: x2 (standard) -> x4 (distilled from x2) -> x8 (distilled from x4) ------------
def load_stage(stage, k: int) -> dict:
    """A chain stage: a config dict (copied) or a config file name / path."""
    if isinstance(stage, (str, Path)):
        from upstep.config import load_config

        return load_config(stage)
    if not isinstance(stage, dict):
        raise ConfigError(f"yonos_chain: stage {k} must be a config dict or a config file name")
    return copy.deepcopy(stage)


def chain_stages(chain_cfg: dict) -> list[dict]:
    """The stages of a ``yonos_chain`` config, each merged over the chain's ``defaults`` section
    (settings every stage shares, e.g. ``train.mixed_precision``; ``--set defaults.train.batch=4``
    changes them all)."""
    from upstep.config import merge

    defaults = chain_cfg.get("defaults", {})
    return [merge(defaults, load_stage(s, k)) for k, s in enumerate(chain_cfg.get("stages") or [])]


def _stage_dir(root: Path, k: int, cfg: dict) -> Path:
    return root / f"stage{k}_{cfg.get('name') or 'x%d' % cfg['data']['scale']}"


def _is_model_folder(p: Path) -> bool:
    return (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def _checkpoint_step(run_dir: Path) -> int:
    from upstep.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)   # the one a resume would load
    try:
        return int(json.loads((ckpt / "state.json").read_text())["step"]) if ckpt else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0   # unreadable: the resume itself says so


def run_chain(stages: list, root: str | Path, stop_after: int | None = None,
              progress: bool = False) -> Path | None:
    """Alg. 1's outer loop: train ``stages`` in order under ``root/stage{k}_{name}``.

    Stage k > 0 with recipe ``scale_distill`` (the default for k > 0) gets stage k-1's exported
    ``model`` folder as ``distill.teacher`` (and ``teacher_scale`` = stage k-1's scale); a
    ``decoder_finetune`` stage gets it as ``init_from``. A stage whose ``model`` folder exists is
    skipped; an unfinished one resumes from its checkpoint (the loop's exact resume).
    ``stop_after`` bounds the optimisation steps of this invocation over the whole chain (like
    ``train``'s). Returns the last stage's model folder, or None if the chain did not finish.
    """
    from upstep.train.loop import train

    root = Path(root)
    cfgs = [load_stage(s, k) for k, s in enumerate(stages)]
    if not cfgs:
        raise ConfigError("yonos_chain: `stages` is empty")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "chain.json").is_file():
        save_json({"recipe": "yonos_chain", "stages": cfgs}, root / "chain.json")
    budget = stop_after
    prev: Path | None = None
    prev_scale: int | None = None
    for k, cfg in enumerate(cfgs):
        if k > 0:
            cfg.setdefault("recipe", "scale_distill")
            if cfg["recipe"] == "scale_distill":
                d = cfg.setdefault("distill", {})
                d["teacher"] = str(prev)
                d.setdefault("teacher_scale", prev_scale)
            elif cfg["recipe"] == "decoder_finetune":
                cfg.setdefault("init_from", str(prev))
        run_dir = _stage_dir(root, k, cfg)
        out = run_dir / "model"
        if not _is_model_folder(out):
            if budget is not None and budget <= 0:
                return None
            start = _checkpoint_step(run_dir)
            train(cfg, run_dir, stop_after=budget, progress=progress)
            if budget is not None:
                budget -= min(int(cfg["train"]["steps"]), start + budget) - start
            if not _is_model_folder(out):
                return None
        prev, prev_scale = out, int(cfg["data"]["scale"])
    return prev
