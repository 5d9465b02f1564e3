"""Provenance of the shipped models: each weights file is the one the results were measured with,
and its embedded training config is the config file the README names for it."""
import hashlib
import json
from pathlib import Path

import pytest

from upstep.config import apply_override, load_config

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "upstep" / "weights"

# SHA-256 of every shipped .safetensors file. After shipping a new model (scripts/ship_model.py),
# regenerate these lines with:
#   cd src/upstep/weights && sha256sum */*.safetensors
# and rerun the benchmarks the README quotes for that model (benchmarks/shipped_models.py at least).
PINNED_SHA256 = {
    "default-x2/model.safetensors": "28870d1eafc6b9f8721f996084291a0cc856e8ba996fdafe4478d91496b1dab2",
    "default-x2/fidelity.safetensors": "928b326b131838b4ba4341f08f5e30dd35a4cb911233ac68f95841a4983abfde",
    "default-x4/fidelity.safetensors": "7c650ebf39090b8b23023ffb10aa2fb14c63e007bdea97321f44c5aa6592ceb3",
    "default-x4/model.safetensors": "562d1a67885c50ca60b9b32481ab84ec223ea513ccba0501d13d08626fd26b05",
    "default-x8/model.safetensors": "191b3a8526406bfca6d4ade575241f2d9789ff7f7d46c7c8d4b6c79625d308bf",
    "fidelity-x4/model.safetensors": "ddbe1cdd5097e84e36a1f7cf3617974f7446ebe504c4b3c8c468fe3223823fc8",
    "large-x4/model.safetensors": "820c012f018a41bd47c5ead05b80cad346485d639a48fc4996f8b64430652c46",
}

# The config file of each shipped model's last training stage, as the README names it; the
# shipped config.json embeds the training config (``info.train_config``, scripts/ship_model.py).
# A (config, overrides) pair is a stage trained with `--set` / `--init-from` on the command line
# (scripts/train_real_gpu.sh and its continuation): the overrides are that command's, as
# ``key.path=value`` (``--init-from X`` is ``model.init_from=X``).
LAST_STAGE_CONFIG = {
    "default-x2": "configs/real_x2_perceptual.json",
    "default-x4": ("configs/gpu/real_x4_perceptual_gpu.json",   # arm new_mix of scripts/train_real_gpu.sh
                   ["model.init_from=/tmp/o/runs/fidelity/model", "train.time_limit_s=300",
                    'data.degradation={"realesrgan_ref": 0.6, "camera_blur": 0.4}', "perceptual.usm_target=false"]),
    "default-x8": "configs/perceptual_x8_small.json",
    "fidelity-x4": ("configs/gpu/real_fidelity_x4_large_gpu.json",   # CPU cosine anneal of the 2026-12-04 file
                    ["model.init_from=src/upstep/weights/fidelity-x4", "train.batch=16", "train.lr=0.0001",
                     "train.lr_schedule=cosine", "train.warmup=20", "train.steps=2500", "train.checkpoint_every=250",
                     "train.val_every=100000", "train.log_every=50"]),
    "large-x4": ("configs/real_x4_perceptual.json",   # runs/large_arm_plain, shipped at blend 0.5 on fidelity-x4
                 ["model.init_from=fidelity-x4", "perceptual.usm_target=false", "train.steps=3600",
                  "train.log_every=25", "train.val_every=600", "train.checkpoint_every=100"]),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_shipped_weights_file_is_pinned():
    shipped = {str(p.relative_to(WEIGHTS)) for p in WEIGHTS.glob("*/*.safetensors")}
    models = {p.name for p in WEIGHTS.iterdir() if (p / "config.json").is_file()}
    assert shipped == set(PINNED_SHA256), "a shipped .safetensors file was added or removed: update PINNED_SHA256"
    assert models == set(LAST_STAGE_CONFIG), "a shipped model was added or removed: update LAST_STAGE_CONFIG"


@pytest.mark.parametrize("name", sorted(PINNED_SHA256))
def test_shipped_weights_match_their_pin(name):
    path = WEIGHTS / name
    assert path.is_file(), f"{path}: missing"
    assert _sha256(path) == PINNED_SHA256[name], f"{name} changed: update PINNED_SHA256 (see its comment)"


def _without_comments(cfg):
    if isinstance(cfg, dict):
        return {k: _without_comments(v) for k, v in cfg.items() if not k.startswith("_comment")}
    return [_without_comments(v) for v in cfg] if isinstance(cfg, list) else cfg


@pytest.mark.parametrize("model", sorted(LAST_STAGE_CONFIG))
def test_embedded_training_config_is_the_named_config_file(model):
    embedded = json.loads((WEIGHTS / model / "config.json").read_text())["info"]["train_config"]
    assert _without_comments(embedded) == _without_comments(_named_config(model))


def _named_config(model: str) -> dict:
    """The config `upstep train` builds from LAST_STAGE_CONFIG[model]: `extends` resolved, overrides applied."""
    return _config_of(LAST_STAGE_CONFIG[model])


def _config_of(entry) -> dict:
    """A config path, or (path, overrides) as in LAST_STAGE_CONFIG, as `upstep train` builds it."""
    path, overrides = (entry, []) if isinstance(entry, str) else entry
    named = load_config(ROOT / path)
    for item in overrides:
        apply_override(named, item)
    return named


def test_the_config_check_sees_a_changed_setting(tmp_path):
    named = _named_config("default-x4")
    changed = json.loads(json.dumps(named))
    changed["train"]["steps"] += 1
    assert _without_comments(changed) != _without_comments(named)
    assert _without_comments({"_comment": "a", "x": [{"_comment": "b", "y": 1}]}) == {"x": [{"y": 1}]}


def _extends_chain(path: Path) -> list[Path]:
    chain = []
    while True:
        base = json.loads(path.read_text()).get("extends")
        if not base:
            return chain
        path = (path.parent / base).resolve()
        chain.append(path)


def test_no_live_config_extends_a_retired_one():
    """Retired and one-off configs live in configs/experiments/; editing one must not change a
    recipe outside it (as editing the retired fidelity_x4_fast.json once changed default-x4's)."""
    experiments = (ROOT / "configs" / "experiments").resolve()
    live = [p for p in (ROOT / "configs").rglob("*.json") if experiments not in p.resolve().parents]
    assert len(live) > 10
    bad = {str(p.relative_to(ROOT)): [str(b) for b in _extends_chain(p) if experiments in b.parents] for p in live}
    assert {p: b for p, b in bad.items() if b} == {}


# A shipped model made as a soup of several runs (scripts/ship_model.py --soup) records each
# member run; its folder, config and log are committed under runs/. The config each member was
# trained with, as LAST_STAGE_CONFIG's pairs, and the step its log ends at. runs/cpu_arm_plain
# trained to 1200 steps, then resumed exactly to 2400 (its config.json keeps the first command's 1200).
SOUP_MEMBER_CONFIG = {
    "runs/cpu_arm_plain": (("configs/real_x4_perceptual.json",
                            ["model.init_from=runs/real_x4_fidelity_cpu/model_step1000", "perceptual.usm_target=false",
                             "perceptual.ldl_weight=0", "train.steps=1200", "train.log_every=50",
                             "train.val_every=600", "train.checkpoint_every=200"]), 2400),
}


def _soup_members():
    """(shipped model, member run) for every soup member but the first, the run whose training
    config the shipped config.json embeds (LAST_STAGE_CONFIG checks that one)."""
    for p in sorted(WEIGHTS.glob("*/config.json")):
        soup = json.loads(p.read_text())["info"].get("network_interpolation", {}).get("soup", [])
        yield from ((p.parent.name, m["run"]) for m in soup[1:])


def test_soup_members_are_committed_runs_of_their_named_config():
    members = list(_soup_members())
    assert ("default-x4", "runs/cpu_arm_plain") in members
    for model, run in members:
        assert run in SOUP_MEMBER_CONFIG, f"{model}: soup member {run} has no entry in SOUP_MEMBER_CONFIG"
        entry, last_step = SOUP_MEMBER_CONFIG[run]
        named = _config_of(entry)
        folder = ROOT / run
        assert _without_comments(json.loads((folder / "config.json").read_text())) == _without_comments(named)
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
        assert log[-1]["step"] == last_step, f"{run}: its log ends at step {log[-1]['step']}"
        assert (folder / "model" / "model.safetensors").is_file()
