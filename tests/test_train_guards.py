"""Training and evaluation as a new user meets them (a QA walkthrough, 2026-12-07): settings given on
the command line, small or damaged photo folders, benchmark folders made by `upstep degrade`."""
import numpy as np
import pytest
from PIL import Image

from upstep.cli import main
from upstep.config import apply_override, load_config
from upstep.errors import ConfigError, UpstepError


def test_a_bundled_config_is_found_without_its_json_extension():
    assert load_config("sr_x4_tiny") == load_config("sr_x4_tiny.json")


@pytest.mark.parametrize("item, says", [
    ("train.steps=abc", "is a number"), ("train.lr=fast", "is a number"), ("train.steps=2.5", "whole number"),
    ("data.train_dirs=/tmp/photos", "is a list"),
])
def test_a_set_of_the_wrong_kind_is_refused_in_one_line(item, says):
    cfg = load_config("sr_x4_tiny.json")
    with pytest.raises(ConfigError, match=says):
        apply_override(cfg, item)


def test_set_values_that_fit_are_taken():
    cfg = load_config("sr_x4_tiny.json")
    apply_override(cfg, "train.steps=7.0")
    apply_override(cfg, 'data.train_dirs=["/a", "/b"]')
    apply_override(cfg, 'data.degradation={"bicubic": 1.0}')      # a name or a mixture: either is fine
    assert cfg["train"]["steps"] == 7 and isinstance(cfg["train"]["steps"], int)
    assert cfg["data"]["train_dirs"] == ["/a", "/b"] and cfg["data"]["degradation"] == {"bicubic": 1.0}
    chain = {"stages": [{"train": {"steps": 5}}]}
    apply_override(chain, "stages.0.train.steps=2")
    assert chain["stages"][0]["train"]["steps"] == 2
    with pytest.raises(ConfigError, match="not an index"):
        apply_override(chain, "stages.3.train.steps=2")
    with pytest.raises(ConfigError, match="not a section"):
        apply_override(cfg, "train.steps.x=1")
    apply_override(cfg, "model.unet.block_out_channels.0=8")
    assert cfg["model"]["unet"]["block_out_channels"][0] == 8
    apply_override(cfg, "train.val_every=null")                    # null turns a numeric setting off
    assert cfg["train"]["val_every"] is None


def test_a_set_on_a_yonos_chain_reaches_every_stage(tmp_path, monkeypatch):
    seen = {}

    def fake_run_chain(stages, root, progress=False):
        seen["stages"] = stages
        return tmp_path / "model"

    monkeypatch.setattr("upstep.recipes.scale_distill.run_chain", fake_run_chain)
    assert main(["train", "yonos_chain_small.json", "--run-dir", str(tmp_path / "chain"),
                 "--set", "stages.0.train.steps=30", "--set", "train.steps=2",
                 "--set", 'data.train_dirs=["/my/photos"]']) == 0
    assert [s["train"]["steps"] for s in seen["stages"]] == [30, 2, 2]      # the stage's own --set wins
    assert all(s["data"]["train_dirs"] == ["/my/photos"] for s in seen["stages"])


def _photos(folder, n, size=(160, 140)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"p{i}.png")


def test_an_empty_validation_split_says_how_to_get_one(tmp_path):
    from upstep.train.data import HRCropDataset

    _photos(tmp_path / "few", 2)
    with pytest.raises(ConfigError, match="validation split .* is empty.*val_fraction.*val_every=0"):
        HRCropDataset.from_config([str(tmp_path / "few")], 64, "val", 0.02)


def test_a_damaged_training_image_is_named(tmp_path):
    from upstep.train.data import HRCropDataset

    _photos(tmp_path / "ph", 1)
    data = (tmp_path / "ph" / "p0.png").read_bytes()
    (tmp_path / "ph" / "p0.png").write_bytes(data[: len(data) // 2])     # the header reads, the pixels do not
    ds = HRCropDataset.from_config([str(tmp_path / "ph")], 64, "train", 0.0)
    with pytest.raises(ConfigError, match="p0.png: cannot read this training image"):
        ds.image(0)


def test_eval_reads_a_set_made_by_degrade_and_names_its_peers(tmp_path, capsys):
    from conftest import make_tiny_model
    from upstep.evaluate.sets import open_set
    from upstep.model import save_model

    root = tmp_path / "data"
    for sub, size in (("HR", (32, 32)), ("LR", (8, 8))):      # `upstep degrade` writes HR/ and LR/
        (root / "eval" / "mine" / sub).mkdir(parents=True)
        Image.new("RGB", size, (90, 120, 30)).save(root / "eval" / "mine" / sub / "a.png")
    assert [(it.name, it.hr_path is not None, it.lr_path is not None) for it in open_set("mine", root).items] == [("a", True, True)]
    (root / "eval" / "empty").mkdir()
    with pytest.raises(UpstepError, match="hr/ and/or lr/"):
        open_set("empty", root)
    model = save_model(make_tiny_model(), tmp_path / "m")
    base = ["eval", "--model", str(model), "--sets", "mine", "--data-root", str(root), "--metrics", "psnr",
            "--no-progress", "--out"]
    assert main([*base, str(tmp_path / "o1"), "--peers", "nosuchpeer"]) == 2
    assert "unknown peer 'nosuchpeer'" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "o2"), "--peers", "realesr-general-x4v3", "--weights-dir",
                 str(tmp_path / "nowhere")]) == 0                     # left out, and said so
    assert "peer realesr-general-x4v3 left out: it cannot run here" in capsys.readouterr().err
    (root / "eval" / "bad" / "hr").mkdir(parents=True)
    (root / "eval" / "bad" / "lr").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(root / "eval" / "bad" / "hr" / "a.png")
    Image.new("RGB", (16, 16)).save(root / "eval" / "bad" / "lr" / "a.png")   # x2 LR in an x4 set
    with pytest.raises(UpstepError, match="16x16 is not 1/4 of its HR"):
        open_set("bad", root).load(open_set("bad", root).items[0], 4)
    assert main([*base, str(tmp_path / "o3"), "--peers", "none"]) == 0


def test_ctrl_c_in_training_says_where_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    def interrupted(cfg, run_dir, progress=False):
        from upstep.train.checkpoint import save_checkpoint

        save_checkpoint(run_dir, 3, {}, {}, {})
        raise KeyboardInterrupt

    monkeypatch.setattr("upstep.train.loop.train", interrupted)
    assert main(["train", "sr_x4_tiny", "--run-dir", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "run the same command again to resume from" in err and "step_0000003" in err
