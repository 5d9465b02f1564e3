"""Draw the bundled demo image (src/upstep/assets/sample.png): procedural, so it carries no
third-party licence. Edges, text, fine stripes, a gradient and smooth texture — the things an
upscaler is judged on. Usage: python scripts/make_sample.py"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 160, 120
rng = np.random.default_rng(7)
yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
sky = np.stack([90 + 100 * yy, 140 + 80 * yy, 220 - 40 * yy], -1)
img = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
d = ImageDraw.Draw(img)
d.ellipse((100, 12, 140, 52), fill=(250, 210, 80), outline=(200, 120, 30), width=2)  # sun
d.polygon([(0, 95), (40, 50), (75, 90), (110, 55), (160, 100), (160, 120), (0, 120)], fill=(70, 110, 60))
for i in range(0, 60, 3):  # fine stripes: a fence
    d.line((5 + i, 88, 5 + i, 110), fill=(240, 235, 220), width=1)
d.line((5, 92, 64, 92), fill=(120, 80, 40), width=2)
d.rectangle((80, 70, 130, 108), fill=(180, 60, 50), outline=(60, 20, 20))  # house
d.polygon([(76, 72), (105, 52), (134, 72)], fill=(90, 40, 40))
d.rectangle((98, 88, 110, 108), fill=(70, 50, 30))
d.rectangle((85, 78, 94, 86), fill=(200, 230, 250), outline=(40, 40, 40))
d.text((6, 6), "upstep x4", fill=(255, 255, 255))
noise = rng.normal(0, 6, (H, W, 3))
grass = np.asarray(img).astype(np.float64)
grass[95:] += noise[95:]
img = Image.fromarray(grass.clip(0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)
out = Path(__file__).resolve().parents[1] / "src/upstep/assets/sample.png"
img.save(out, optimize=True)
print(out)
