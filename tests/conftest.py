import pytest
import torch

from upstep.model import SRDiffusionModel

# Tests run tiny tensors: one thread avoids OpenMP spin-wait contention, which made tiny steps
# 100x slower whenever another process (a training run, a second pytest) shared the cores.
torch.set_num_threads(1)


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
