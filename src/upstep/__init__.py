"""upstep: one-step diffusion image super-resolution.

    import upstep
    up = upstep.load("default-x4")          # shipped model, no download
    big = up.upscale(Image.open("photo.jpg"))
"""
from upstep.api import Upscaler, available_models, load

__version__ = "0.1.0"
__all__ = ["load", "Upscaler", "available_models", "__version__"]
