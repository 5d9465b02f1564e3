"""Diffusion maths shared by every recipe: the VP schedule, v-parameterisation, DDIM, ResShift."""
from upstep.diffusion.schedule import CosineSchedule, sample_t
from upstep.diffusion.ddim import ddim_sample, ddim_timesteps

__all__ = ["CosineSchedule", "sample_t", "ddim_sample", "ddim_timesteps"]
