"""Strength: one knob from the fidelity end (S = 0) to the shipped perceptual model (S = 1).

Mechanism: **network interpolation** (ESRGAN, Wang et al. 2018, §3.4; Real-ESRGAN's ``dni`` for
the denoise strength of general-x4v3). A perceptual model folder may hold, beside
``config.json`` and ``model.safetensors`` (θ_perc), ``fidelity.safetensors`` (θ_fid): the weights
of the SAME architecture at the fidelity end, i.e. the PSNR-trained model the perceptual
fine-tune started from. At strength S the model runs with

    θ(S) = θ_fid + S (θ_perc - θ_fid)        (``torch.lerp``: exactly θ_fid at 0, θ_perc at 1)

Why this mechanism and not the others the issue names:
* cost: θ(S) is computed once per S (a few milliseconds for these models) and cached, then the
  network runs as the perceptual model does: same architecture, one evaluation, so the cost at
  any S is the perceptual model's (the bound is 1.3x). Output interpolation
  (x(S) = x_fid + S (x_perc - x_fid)) runs two networks: 2x.
* no retraining: a timestep- or S-conditioned model needs a new training recipe and a new
  model; interpolation needs only the fidelity weights perceptual training already starts from
  (``init_from``), which ``scripts/ship_model.py --fidelity`` stores beside the model.
* smoothness: the fine-tune starts at θ_fid and moves a short way, so the two ends lie in one
  basin and the outputs in between change smoothly (ESRGAN Fig. 10; measured in
  ``docs/results/strength``). In output space the two ends would blur each other's details.

The fidelity end is defined as θ_fid run in the perceptual model's config (``config.json``):
settings that are not weights (e.g. ``degrid_sigma``, the fixed grid notch) are the perceptual
model's at every S.

Where θ_fid is stored: the folder's own ``fidelity.safetensors``, or, for a shipped model whose
fidelity end is itself a shipped model, that model's ``model.safetensors``, named in
``config.json`` as ``info.fidelity_end.shipped_model`` (``fidelity_weights_path``). The reference
spares a second copy of the same weights in the package (large-x4's fidelity end is fidelity-x4);
it may only name a model shipped inside the package, never a path.

Keys the fidelity weights lack: perceptual training may add a learnable decoder to a
pixel-unshuffle latent (``upstep.recipes.perceptual``), which starts as the identity because its
last convolution is zero-initialised (``upstep.nn.autoencoders``). Its fidelity end is that
identity start, taken as the perceptual decoder with the last convolution zeroed
(``identity_state``): at S the decoder's residual branch is then exactly S times the perceptual
one. Any other missing key is refused: there is no documented value to interpolate from.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from upstep.errors import ModelLoadError, UpstepError

FIDELITY_FILE = "fidelity.safetensors"
CACHED_STRENGTHS = 2  # θ(S) kept for this many recent values of S (each is one copy of the weights)


def check_strength(strength: float) -> float:
    """S as a float in [0, 1], or a one-line error."""
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise UpstepError(f"strength must be a number between 0 and 1, got {strength!r}") from None
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise UpstepError(f"strength must be between 0 (fidelity) and 1 (the shipped perceptual model), got {strength}")
    return s


AUTO = "auto"


def parse_strength(value) -> float | str | None:
    """What a user typed or passed as a strength: None (the model's default), ``AUTO`` (any case),
    or a number checked by ``check_strength``. The one parser of the CLI, ``upstep eval``, the
    benchmarks and ``Upscaler``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    return check_strength(value)


def _config_info(folder: str | Path) -> dict:
    """``info`` of ``folder``'s config.json; {} when the file is missing or not a JSON object."""
    import json

    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    info = cfg.get("info") if isinstance(cfg, dict) else None
    return info if isinstance(info, dict) else {}


def auto_strength_rule(folder: str | Path | None) -> dict | None:
    """The model's rule for strength "auto" (``info.auto_strength`` in its config.json:
    {"camera_like": S, "otherwise": S, "threshold": p}), or None when it declares none. A model that
    declares one runs "auto" when no strength is asked for (``docs/results/strength_auto``)."""
    rule = _config_info(folder).get("auto_strength") if folder is not None else None
    if rule is None:
        return None
    try:
        out = {"camera_like": check_strength(rule["camera_like"]), "otherwise": check_strength(rule["otherwise"]),
               "threshold": float(rule["threshold"])}
        if not 0.0 <= out["threshold"] <= 1.0:   # also refuses NaN
            raise ValueError(f"threshold {rule['threshold']!r} is not a probability")
        if rule.get("detector", "upstep/assets/camera-detector") != "upstep/assets/camera-detector":
            raise ValueError(f"detector {rule['detector']!r}: only the shipped upstep/assets/camera-detector is read")
        return out
    except (KeyError, TypeError, ValueError, UpstepError) as e:
        raise ModelLoadError(f"{Path(folder) / 'config.json'}: info.auto_strength must be "
                             f'{{"camera_like": S, "otherwise": S, "threshold": p}} with S in 0..1 ({e})') from None


def pick_auto_strength(rule: dict, lr01: torch.Tensor, detector=None) -> float:
    """Strength "auto" for one LR image (RGB in [0, 1]): ``rule["camera_like"]`` where the camera
    detector (``upstep.camera_detect``; None: the shipped one) gives P(camera-like) above
    ``rule["threshold"]``, else ``rule["otherwise"]``."""
    from upstep.camera_detect import camera_probability, shipped_detector

    if min(lr01.shape[-2:]) < 4:     # too small to read: the model's own default
        return rule["otherwise"]
    p = camera_probability(detector or shipped_detector(), lr01)
    return rule["camera_like"] if p > rule["threshold"] else rule["otherwise"]


def complete_fidelity_state(model: nn.Module, fid: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The fidelity end θ_fid with every key of ``model`` (the perceptual model): ``fid`` checked
    against it (same keys and shapes) and a decoder perceptual training added filled in at its
    identity start. ``source`` names the fidelity weights in errors."""
    perc = model.state_dict()
    extra = sorted(set(fid) - set(perc))
    if extra:
        raise ModelLoadError(f"{source}: fidelity weights have keys the model lacks ({', '.join(extra[:3])}); "
                             "the fidelity end must be the same architecture as the model")
    bad = [f"{k} {tuple(fid[k].shape)} vs {tuple(perc[k].shape)}" for k in fid if fid[k].shape != perc[k].shape]
    if bad:
        raise ModelLoadError(f"{source}: fidelity weights do not match the model's shapes ({'; '.join(bad[:3])}); "
                             "the fidelity end must be the same architecture as the model")
    missing = set(perc) - set(fid)
    out = dict(fid)
    if missing:
        ae = getattr(model, "autoencoder", None)
        start = ({f"autoencoder.{k}": v for k, v in ae.identity_state().items()}
                 if hasattr(ae, "identity_state") else {})
        unknown = sorted(missing - set(start))
        if unknown:
            raise ModelLoadError(f"{source}: fidelity weights lack {len(unknown)} of the model's tensors "
                                 f"({', '.join(unknown[:3])}) and no identity start is documented for them; "
                                 "give the fidelity model this model was fine-tuned from")
        out.update({k: start[k] for k in missing})
    return {k: out[k].float() if out[k].is_floating_point() else out[k] for k in perc}


def shipped_fidelity_reference(folder: str | Path) -> str | None:
    """The shipped model that ``folder``'s config.json names as its fidelity end
    (``info.fidelity_end.shipped_model``), or None when it names none."""
    ref = _config_info(folder).get("fidelity_end", {})
    return ref.get("shipped_model") if isinstance(ref, dict) else None


def fidelity_weights_path(folder: str | Path) -> Path | None:
    """The file that holds the fidelity end of the model in ``folder``: its own
    ``fidelity.safetensors``, else the ``model.safetensors`` of the shipped model its config names;
    None when it has neither. A reference that is not the bare name of a shipped model is an error."""
    from upstep.paths import package_weights_dir

    own = Path(folder) / FIDELITY_FILE
    if own.is_file():
        return own
    name = shipped_fidelity_reference(folder)
    if name is None:
        return None
    bare = isinstance(name, str) and Path(name).name == name and not name.startswith(".")
    if not (bare and (package_weights_dir() / name / "model.safetensors").is_file()):
        raise ModelLoadError(f"{Path(folder) / 'config.json'}: its fidelity end names shipped model {name!r}, "
                             "which is not a model shipped in this package; reinstall upstep or re-ship the model "
                             "with its own fidelity.safetensors")
    return package_weights_dir() / name / "model.safetensors"


def read_fidelity_state(model: nn.Module, folder: Path) -> dict[str, torch.Tensor]:
    """θ_fid of the model loaded from ``folder`` (safetensors only), or a one-line error."""
    from safetensors.torch import load_file

    from upstep.paths import package_weights_dir

    path = fidelity_weights_path(folder)
    if path is None and Path(folder).resolve().parent == package_weights_dir().resolve():
        have = sorted(p.name for p in package_weights_dir().iterdir()
                      if p.is_dir() and fidelity_weights_path(p) is not None)
        raise UpstepError(f"model {Path(folder).name} has no strength control (it ships without a fidelity end); "
                          f"drop --strength, or use a model that has one: {', '.join(have) or 'none'}")
    if path is None:
        raise UpstepError(f"model {folder} has no fidelity end ({FIDELITY_FILE} is missing there); strength "
                          "needs a perceptual model shipped with its fidelity weights (scripts/ship_model.py RUN "
                          "NAME --fidelity FIDELITY_MODEL writes them), or drop --strength")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelLoadError(f"{path}: cannot read safetensors file ({e})") from e
    return complete_fidelity_state(model, state, str(path))


class NetworkInterpolation:
    """Sets ``model``'s weights to θ(S) in place. The model's weights at construction are θ_perc;
    ``fidelity`` is a complete θ_fid (``complete_fidelity_state``). Not thread-safe on its own:
    the caller holds one lock around ``set`` and the run that uses the weights."""

    def __init__(self, model: nn.Module, fidelity: dict[str, torch.Tensor]):
        self.model = model
        self.perc = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.fid = fidelity
        self.strength = 1.0
        self._cache: OrderedDict[float, dict[str, torch.Tensor]] = OrderedDict()

    def state(self, strength: float) -> dict[str, torch.Tensor]:
        """θ(S) for every key (tensors that are not floating point are the model's own)."""
        s = check_strength(strength)
        if s in self._cache:
            self._cache.move_to_end(s)
            return self._cache[s]
        st = {k: torch.lerp(self.fid[k], p, s) if p.is_floating_point() else p for k, p in self.perc.items()}
        self._cache[s] = st
        while len(self._cache) > CACHED_STRENGTHS:
            self._cache.popitem(last=False)
        return st

    @torch.no_grad()
    def set(self, strength: float) -> None:
        s = check_strength(strength)
        if s == self.strength:
            return
        target = self.state(s)
        for k, t in self.model.state_dict().items():  # copy_ keeps device, dtype and memory format
            t.copy_(target[k])
        self.strength = s


def _tensor_dtype(path: Path) -> torch.dtype:
    """The dtype of the floating-point tensors stored in a safetensors file (float32 if none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            t = f.get_slice(k)
            dt = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}.get(t.get_dtype())
            if dt is not None:
                return dt
    return torch.float32


def fidelity_end(model: nn.Module, fidelity: nn.Module, source: str = "the fidelity model") -> tuple[dict, dict]:
    """Check that ``fidelity`` can be ``model``'s fidelity end: one architecture (same kind, scale,
    target and U-Net, same latent; it may lack a decoder that perceptual training added, filled in
    at its identity start). Returns (θ_fid for every key of ``model``, the settings that are not
    weights and differ: ``{"key": [fidelity's, model's]}``; the model's apply at every S)."""
    mine, theirs = model.config(), fidelity.config()
    for key in ("kind", "scale", "target", "unet"):
        if mine.get(key) != theirs.get(key):
            raise ModelLoadError(f"{source}: its {key} ({theirs.get(key)}) differs from the model's ({mine.get(key)}); "
                                 "the fidelity end must be the model the perceptual fine-tune started from")
    for key in ("factor", "latent_channels"):
        a, b = getattr(model.autoencoder, key, None), getattr(fidelity.autoencoder, key, None)
        if a != b:
            raise ModelLoadError(f"{source}: autoencoder {key} {b} differs from the model's {a}; "
                                 "the fidelity end must use the same latent")
    state = complete_fidelity_state(model, fidelity.state_dict(), source)
    skip = {"kind", "scale", "target", "unet", "autoencoder", "info", "format_version"}
    differs = {k: [theirs.get(k), mine.get(k)] for k in sorted((set(mine) | set(theirs)) - skip)
               if mine.get(k) != theirs.get(k)}
    return state, differs


def write_fidelity(model_folder: str | Path, fidelity: nn.Module, source: str = "the fidelity model") -> dict:
    """Store ``fidelity``'s weights as the fidelity end of the model in ``model_folder``
    (``fidelity.safetensors``, in the dtype of its ``model.safetensors``), checked by
    ``fidelity_end``; returns the differing settings that are not weights."""
    from upstep.model import load_model, save_tensors

    folder = Path(model_folder)
    state, differs = fidelity_end(load_model(folder), fidelity, source)
    dtype = _tensor_dtype(folder / "model.safetensors")
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_tensors(state, folder / FIDELITY_FILE, metadata={"fidelity_end_of": folder.name, "source": str(source)})
    return differs
