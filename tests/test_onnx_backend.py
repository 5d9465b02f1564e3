"""The ONNX Runtime backend (issue 13): same outputs as torch, exported once, an option
(``--backend onnxruntime``) that runs only where it can; ``auto`` is torch."""
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model

import upstep
from upstep.api import Upscaler, pick_backend
from upstep.errors import UpstepError
from upstep.nn.autoencoders import ResizeConvAutoencoder

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _conv_model():
    """The tiny test model with a U-Net without self-attention (what ORT runs, like default-x4)."""
    from upstep.nn.unet import SRUNet

    model = make_tiny_model()
    torch.manual_seed(1)
    model.unet = SRUNet(48, block_out_channels=(16, 32), norm_num_groups=8, mid_attention=False)
    torch.nn.init.normal_(model.unet.unet.conv_out.weight, std=0.02)
    return model.eval()


def _model_with_decoder():
    model = _conv_model()
    model.autoencoder = ResizeConvAutoencoder(4, width=16, blocks=1, hr_channels=8)
    torch.nn.init.normal_(model.autoencoder.residual[-1].weight, std=0.05)  # the branch really acts
    model.set_degrid(6.0)
    return model.eval()


@pytest.mark.parametrize("steps", [1, 3])
def test_onnxruntime_matches_torch_on_tiles_of_two_shapes(tmp_path, monkeypatch, steps):
    """Tiled 40x56 input (two tile shapes, batches of tiles, the resize decoder and the notch), 1 and
    3 DDIM steps (t varies): ORT and torch agree to float rounding."""
    monkeypatch.setenv("UPSTEP_CACHE", str(tmp_path / "cache"))
    model = _model_with_decoder()
    lr = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    kw = dict(device="cpu", dtype="float32", tile=24, overlap=8)
    ref = Upscaler(model, backend="torch", **kw).upscale_tensor(lr, steps=steps)
    fast = Upscaler(model, backend="onnxruntime", **kw)
    assert fast.backend == "onnxruntime" and type(fast.pipeline.model.unet.unet).__name__ == "_OrtUNet"
    out = fast.upscale_tensor(lr, steps=steps)
    assert out.shape == ref.shape == (1, 3, 160, 224)
    assert (out - ref).abs().max() < 1e-4
    assert (ref - torch.nn.functional.interpolate(lr, scale_factor=4)).abs().max() > 0.01  # the networks acted


def test_export_is_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTEP_CACHE", str(tmp_path / "cache"))
    model = _model_with_decoder()
    Upscaler(model, device="cpu", dtype="float32", backend="onnxruntime")
    files = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert [f.name.split("_")[1] for f in files] == ["decoder.onnx", "unet.onnx"]
    stamps = [f.stat().st_mtime_ns for f in files]
    Upscaler(model, device="cpu", dtype="float32", backend="onnxruntime")   # a second process loads, not exports
    assert [f.stat().st_mtime_ns for f in files] == stamps
    torch.nn.init.normal_(model.unet.unet.conv_out.weight, std=0.03)      # other weights: another file
    Upscaler(model, device="cpu", dtype="float32", backend="onnxruntime")
    assert len(list((tmp_path / "cache" / "onnx").glob("*_unet.onnx"))) == 2


def test_auto_is_torch_and_onnxruntime_runs_only_where_it_can(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTEP_CACHE", str(tmp_path / "cache"))
    model, cpu = _conv_model(), torch.device("cpu")
    # ORT measured slower than torch once buffers are reused (docs/results/bench_fast_x4): an option only
    assert pick_backend("auto", model, cpu, torch.float32) == "torch"
    assert pick_backend("onnxruntime", model, cpu, torch.float32) == "onnxruntime"
    with pytest.raises(UpstepError, match="self-attention"):   # ORT would materialise every score matrix
        pick_backend("onnxruntime", make_tiny_model(), cpu, torch.float32)
    assert pick_backend("torch", model, cpu, torch.float32) == "torch"
    with pytest.raises(UpstepError, match="float32 on the CPU only"):
        pick_backend("onnxruntime", model, cpu, torch.bfloat16)
    with pytest.raises(UpstepError, match="backend must be one of"):
        pick_backend("tensorrt", model, cpu, torch.float32)
    monkeypatch.setattr("upstep.onnx_backend.installed", lambda: False)
    assert pick_backend("auto", model, cpu, torch.float32) == "torch"
    with pytest.raises(UpstepError, match="not installed"):
        pick_backend("onnxruntime", model, cpu, torch.float32)


def test_shipped_default_model_matches_torch_on_a_real_image(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTEP_CACHE", str(tmp_path / "cache"))
    from upstep.io import read_image, to_model_rgb

    lr = to_model_rgb(read_image(Path(upstep.__file__).parent / "assets" / "sample.png"))[..., :64, :64]
    # the weights as shipped (S = 1): on torch, default-x4's default is --strength auto, which the
    # onnxruntime backend does not run (it always runs the model's own weights, S = 1)
    ref = upstep.load("default-x4", device="cpu", dtype="float32", backend="torch").upscale_tensor(lr, strength=1.0)
    fast = upstep.load("default-x4", device="cpu", dtype="float32", backend="onnxruntime")
    out = fast.upscale_tensor(lr)
    assert (out - ref).abs().max() < 2e-4


def test_a_damaged_cache_file_or_an_unwritable_cache_does_not_stop_the_upscale(tmp_path, monkeypatch):
    """The ONNX Runtime path must not fail on the cache: a truncated export is replaced by a fresh one
    (with a warning naming the file), and a cache path that is not a folder falls back to a
    temporary export. Outputs stay those of torch."""
    monkeypatch.setenv("UPSTEP_CACHE", str(tmp_path / "cache"))
    model = _model_with_decoder()
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = Upscaler(model, device="cpu", dtype="float32", backend="torch").upscale_tensor(lr)
    Upscaler(model, device="cpu", dtype="float32", backend="onnxruntime")
    unet_file = next((tmp_path / "cache" / "onnx").glob("*_unet.onnx"))
    unet_file.write_bytes(b"not an onnx file")
    with pytest.warns(UserWarning, match=unet_file.name):
        out = Upscaler(model, device="cpu", dtype="float32", backend="onnxruntime").upscale_tensor(lr)
    assert (out - ref).abs().max() < 1e-4
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("UPSTEP_CACHE", str(blocker))          # cache "folder" is a file: cannot be made
    with pytest.warns(UserWarning, match="temporary folder"):
        out = Upscaler(model, device="cpu", dtype="float32", backend="onnxruntime").upscale_tensor(lr)
    assert (out - ref).abs().max() < 1e-4
