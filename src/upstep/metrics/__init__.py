"""Quality metrics shared by the whole project (inputs NCHW in [0, 1]; per-image outputs)."""
from upstep.metrics.fidelity import psnr, to_y

__all__ = ["psnr", "to_y"]
