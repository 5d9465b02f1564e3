"""upstep: one-step diffusion image super-resolution.

    import upstep
    up = upstep.load("default-x4")          # shipped model, no download
    big = up.upscale(Image.open("photo.jpg"))
    softer = up.upscale(Image.open("photo.jpg"), strength=0.5)   # 0 fidelity .. 1 as shipped
    plan = upstep.plan_size(Image.open("photo.jpg").size, scale=3)   # or width=/height=
    x3 = upstep.load(plan.model).upscale(Image.open("photo.jpg"), out_size=plan.size)
"""
import os
import sys

# Before torch's first allocation (it reads this once): CPU buffers of 2 MB and more are aligned to
# and advised as transparent huge pages, so a fresh buffer costs one page fault per 2 MB instead of
# per 4 KB. Above glibc's 32 MB mmap ceiling every buffer is fresh on every call (general-x4v3 at
# 512²: 67 MB activations, 2.2 million faults and about 40 % of a call's time without it). Only
# when upstep is imported before torch, and never overriding a user's setting.
if "torch" not in sys.modules:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from upstep.api import Upscaler, available_models, load, plan_size  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load", "Upscaler", "available_models", "plan_size", "__version__"]
