"""upstep.camera_detect: the camera-like-LR detector behind --strength auto."""
import pytest
import torch

from upstep.camera_detect import (CameraDetector, camera_probability, grid_crops, load_detector, save_detector,
                                  train_detector)
from upstep.errors import UpstepError


@pytest.mark.parametrize("h,w,n", [(40, 30, 1), (128, 128, 1), (129, 300, 6), (1000, 2000, 16)])
def test_grid_crops_cover_the_image_with_at_most_16_crops(h, w, n):
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(1, 3, h, w)
    crops = grid_crops(x)
    assert crops.shape == (n, 3, min(128, h), min(128, w))
    # the first crop starts at the top-left corner and the last ends at the bottom-right one
    assert crops[0, 0, 0, 0] == 0 and crops[-1, 0, -1, -1] == h * w - 1


def test_camera_probability_refuses_what_is_not_one_rgb_image():
    det = CameraDetector().eval()
    assert 0 <= camera_probability(det, torch.rand(3, 20, 30)) <= 1
    for bad in (torch.rand(2, 3, 16, 16), torch.rand(1, 1, 16, 16), torch.rand(1, 3, 3, 16)):
        with pytest.raises(ValueError, match="camera_probability"):
            camera_probability(det, bad)


def test_training_is_deterministic_and_the_files_round_trip(tmp_path):
    hr = torch.rand(12, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a, ra = train_detector(hr, steps=20, batch=8, val=4, seed=1)
    b, _ = train_detector(hr, steps=20, batch=8, val=4, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert ra["val_examples"] == 4 and ra["train_examples"] == 20 and 0 <= ra["val_accuracy"] <= 1
    save_detector(a, tmp_path / "det", {"note": "test"})
    c = load_detector(tmp_path / "det")
    x = torch.rand(1, 3, 40, 40)
    assert camera_probability(a, x) == camera_probability(c, x)
    (tmp_path / "det" / "config.json").write_text('{"kind": "vdiffusion"}')
    with pytest.raises(UpstepError, match="not 'camera_detector'"):
        load_detector(tmp_path / "det")
    with pytest.raises(UpstepError, match="not a camera detector"):
        load_detector(tmp_path / "nothing")


def test_a_few_hundred_steps_learn_to_tell_camera_blur_from_noisy_lr():
    """Trained briefly on random smooth images, it already separates its two classes on new crops."""
    from upstep.camera_detect import NEGATIVE, POSITIVE
    from upstep.degrade import degrade

    def photos(n, seed):
        g = torch.Generator().manual_seed(seed)
        low = torch.nn.functional.interpolate(torch.rand(n, 3, 16, 16, generator=g), size=(128, 128),
                                              mode="bicubic", align_corners=False)
        edges = (torch.rand(n, 1, 128, 128, generator=g) > 0.5).float()
        edges = torch.nn.functional.avg_pool2d(edges, 8, 8).repeat_interleave(8, 2).repeat_interleave(8, 3)
        return (0.5 * low + 0.4 * edges).clamp(0, 1)

    det, _ = train_detector(photos(48, 0), steps=300, batch=16, val=8, seed=0)
    test = photos(16, 1)
    g = torch.Generator().manual_seed(5)
    pos = [camera_probability(det, x[None]) for x in degrade(test, 4, POSITIVE, g)]
    neg = [camera_probability(det, x[None]) for x in degrade(test, 4, NEGATIVE, g)]
    assert sum(pos) / len(pos) > sum(neg) / len(neg) + 0.2
