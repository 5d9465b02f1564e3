"""Tiny random Stable-Diffusion-shaped diffusers folders, built offline (no download).

Used by the tests and by ``scripts/gpu_check.sh``: the same layout as a real SD 1.x/2.x folder
(``unet/`` a ``UNet2DConditionModel`` with cross-attention, ``vae/`` an ``AutoencoderKL``,
``text_encoder/`` a ``CLIPTextModel``, ``tokenizer/`` a ``CLIPTokenizer``), all written with
``save_pretrained`` except the tokenizer, whose vocabulary is written here by hand, in the
files a real SD folder has (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

TEXT_LEN = 8  # the tokenizer's model_max_length (77 in real CLIP)


def write_tiny_clip_tokenizer(folder: Path) -> dict[str, int]:
    """A byte-pair vocabulary of the 26 letters plus CLIP's two special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": TEXT_LEN, **special}))
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    return vocab


def make_tiny_sd_folder(root: str | Path, text_encoder: bool = True, seed: int = 0,
                        scaling_factor: float = 0.18215, channels=(8, 16), cross_attention_dim: int = 16):
    """Write a tiny random SD-shaped folder under ``root``; returns (vae, unet, text_encoder or None)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    root = Path(root)
    torch.manual_seed(seed)
    n = len(channels)
    vae = AutoencoderKL(block_out_channels=tuple(channels), down_block_types=("DownEncoderBlock2D",) * n,
                        up_block_types=("UpDecoderBlock2D",) * n, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, scaling_factor=scaling_factor)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=tuple(channels), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) + ("DownBlock2D",) * (n - 1),
        up_block_types=("UpBlock2D",) * (n - 1) + ("CrossAttnUpBlock2D",),
        cross_attention_dim=cross_attention_dim, attention_head_dim=2, norm_num_groups=4)
    vae.save_pretrained(root / "vae", safe_serialization=True)
    unet.save_pretrained(root / "unet", safe_serialization=True)
    enc = None
    if text_encoder:
        from transformers import CLIPTextConfig, CLIPTextModel

        vocab = write_tiny_clip_tokenizer(root / "tokenizer")
        enc = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=cross_attention_dim, intermediate_size=2 * cross_attention_dim,
            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=TEXT_LEN,
            bos_token_id=0, eos_token_id=1, pad_token_id=1))
        enc.save_pretrained(root / "text_encoder", safe_serialization=True)
        enc.eval()
    return vae.eval(), unet.eval(), enc
