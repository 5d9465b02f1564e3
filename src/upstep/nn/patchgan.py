"""PatchGAN discriminator (pix2pix, Isola et al. 2017) as used by latent-diffusion autoencoders.

``NLayerDiscriminator``: a 4x4 stride-2 conv + LeakyReLU(0.2), then ``n_layers - 1`` blocks of
4x4 stride-2 conv + norm + LeakyReLU(0.2) doubling the width (capped at 8 x ``channels``), one
4x4 stride-1 conv + norm + LeakyReLU, and a 4x4 stride-1 conv to one logit per patch
(a 70x70 receptive field for ``n_layers = 3``). Inputs: pixels NCHW in [-1, 1].

Hinge losses (taming-transformers / VQGAN)::

    L_D = 1/2 (E[relu(1 - D(x))] + E[relu(1 + D(x_hat))])      L_G = -E[D(x_hat)]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_NORMS = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "none": None}


class NLayerDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(_NORMS)}, got {norm!r}")
        norm_layer = _NORMS[norm]
        use_bias = norm_layer is None  # a norm with affine parameters makes the conv bias redundant

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride, 1, bias=use_bias)]
            if norm_layer is not None:
                layers.append(norm_layer(cout, affine=True) if norm == "instance" else norm_layer(cout))
            return layers + [nn.LeakyReLU(0.2, True)]

        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += block(channels * prev, channels * mult, 2)
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += block(channels * prev, channels * mult, 1)
        layers.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)
        self._config = {"in_channels": in_channels, "channels": channels, "n_layers": n_layers, "norm": norm}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def config(self) -> dict:
        return dict(self._config)


def _init_weights(m: nn.Module) -> None:
    """pix2pix / taming initialisation: conv N(0, 0.02), norm scale N(1, 0.02), bias 0."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.float().mean()


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """VQGAN eq. 7: lambda = ||grad_{G_L} L_rec|| / (||grad_{G_L} L_GAN|| + 1e-4), G_L the
    generator's last layer; clamped to [0, max_weight] and detached."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, max_weight).detach()
