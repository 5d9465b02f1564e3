"""`upstep check-data`: near-duplicates between the training pool and the eval sets."""
import io

import numpy as np
import pytest
from PIL import Image

from upstep.cli import main
from upstep.evaluate.datacheck import check, check_data, hamming, phash, signature, signatures
from upstep.paths import data_root

DATA = data_root()
SET5 = DATA / "eval" / "set5" / "hr"
HAVE_DATA = (DATA / "train").is_dir() and SET5.is_dir()


def _reencoded(image: Image.Image, size: tuple[int, int], crop: int, quality: int = 75) -> Image.Image:
    """``image`` resized to ``size``, saved as JPEG and cropped by ``crop`` px on each side: how a
    benchmark copy and the training-set original of one photo differ."""
    buf = io.BytesIO()
    image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=quality)
    out = Image.open(io.BytesIO(buf.getvalue()))
    return out.crop((crop, crop, size[0] - crop, size[1] - crop)) if crop else out


def _photo(seed: int, size: int = 96) -> Image.Image:
    """A smooth random 'photo' (upsampled noise), different for every seed."""
    g = np.random.default_rng(seed)
    small = Image.fromarray((g.random((6, 6, 3)) * 255).astype(np.uint8))
    return small.resize((size, size), Image.Resampling.BICUBIC)


def test_a_reencoded_resized_copy_is_found_and_unrelated_images_are_not():
    originals = {f"train/{i}.png": signature(_photo(i)) for i in range(20)}
    evals = {"set": {"copy_of_7.png": signature(_reencoded(_photo(7), (131, 131), crop=3)),
                     "other.png": signature(_photo(100))}}
    result = check(originals, evals)
    assert [(p["train"], p["eval"]) for p in result["pairs"]] == [("train/7.png", "copy_of_7.png")]
    assert result["pairs"][0]["correlation"] > 0.95
    assert check(originals, evals, max_distance=0, min_correlation=1.0)["pairs"] == []   # thresholds are applied
    assert hamming(phash(_photo(1)), phash(_photo(2))) > 12


def _write(image: Image.Image, path, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(path, fmt)


@pytest.mark.skipif(not HAVE_DATA, reason="needs ../shared/data (Set5 and the training pool)")
def test_it_would_have_caught_set5_img_005_in_bsds500_train(tmp_path, capsys):
    """BSDS500 train 302003.jpg (481×321 portrait JPEG, since removed from the pool) is Set5 img_005
    (228×344 PNG). Rebuilt from img_005 at the BSDS size, JPEG-encoded and 4 px cropped, next to
    real training images, the check reports exactly that pair and exits 1."""
    root = tmp_path / "data"
    for p in sorted(SET5.iterdir()):
        _write(Image.open(p), root / "eval/set5/hr" / p.name)
    _write(_reencoded(Image.open(SET5 / "img_005.png"), (321, 481), crop=4), root / "train/bsds500_train/hr/302003.jpg",
           "JPEG")
    for p in sorted((DATA / "train/bsds500_train/hr").iterdir())[:20]:
        _write(Image.open(p), root / "train/bsds500_train/hr" / p.name, "JPEG")
    result = check_data(root)
    assert [(p["train"].rsplit("/", 1)[1], p["eval"].rsplit("/", 1)[1]) for p in result["pairs"]] == [
        ("302003.jpg", "img_005.png")]
    assert main(["check-data", "--data-root", str(root), "--out", str(tmp_path / "report")]) == 1
    assert "1 near-duplicate pairs" in capsys.readouterr().out
    assert "**Near-duplicate pairs: 1.**" in (tmp_path / "report" / "data_check.md").read_text()


@pytest.mark.skipif(not HAVE_DATA, reason="needs ../shared/data")
def test_the_shared_training_pool_holds_no_eval_image():
    result = check_data(DATA)
    assert result["train_images"] > 1000 and sum(result["eval_images"].values()) > 250
    assert result["pairs"] == []


def test_a_folder_with_an_unreadable_image_is_named(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(Exception, match="bad.png: cannot read as an image"):
        signatures(tmp_path)


def test_your_own_photo_folder_is_checked_with_train(tmp_path, capsys):
    root = tmp_path / "data"
    original = _photo(7)
    _write(original, root / "eval/mine/HR/a.png")                # a set as `upstep degrade` writes it
    _write(_photo(100), root / "eval/mine/HR/b.png")
    mine = tmp_path / "my_photos"
    _write(_reencoded(original, (131, 131), crop=3), mine / "trip/dup.jpg", "JPEG")
    _write(_photo(5), mine / "other.png")
    assert main(["check-data", "--data-root", str(root), "--train", str(mine), "--out", str(tmp_path / "r")]) == 1
    assert "dup.jpg" in capsys.readouterr().out
    assert f"under `{mine}`" in (tmp_path / "r" / "data_check.md").read_text()
    assert main(["check-data", "--data-root", str(root), "--train", str(tmp_path / "nope")]) == 2
    assert "nope: not a folder" in capsys.readouterr().err
