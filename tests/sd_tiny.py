"""A tiny Stable Diffusion pipeline built from small configs (random weights, local tokenizer).

It has the real component classes (UNet2DConditionModel with cross-attention, AutoencoderKL,
CLIPTextModel, CLIPTokenizer, DDIM scheduler), so saving it and loading it back exercises the
same ``from_pretrained`` path a user's SD v1.4 folder takes, in a second on the CPU.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

TOKENS = 16  # tokenizer model_max_length; SD uses 77


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2 / CLIP convention)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def write_tokenizer(folder: Path) -> Path:
    """A character-level CLIP tokenizer: every byte symbol, its end-of-word form, two specials."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": TOKENS}))
    return folder


def build_tiny_pipeline(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """Save a tiny random StableDiffusionPipeline into ``folder`` (diffusers layout)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    tok = CLIPTokenizer.from_pretrained(write_tokenizer(folder.parent / f"{folder.name}-tokenizer"))
    vocab = tok.get_vocab()
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=TOKENS, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64), sample_size=16,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=32)
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                          steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def write_task_spec(folder: Path, pipe: Path, *, name: str, positives: str, negatives: str, gens: int = 1,
                    seed: int = 3, tail: str = "") -> Path:
    """A tiny SD task spec in ``folder``: ``positives`` (a ';'-separated CSV with Caption and type
    columns) and ``negatives`` (one prompt a line) written beside it as ``mem.csv`` and
    ``nmem.txt``, pinned by sha256; 3 DDIM steps at guidance 7.5 with the weights in ``pipe``;
    ``tail`` appends sections (e.g. ``[balance]``)."""
    import hashlib
    folder.mkdir(parents=True, exist_ok=True)
    pins = {}
    for file, text in (("mem.csv", positives), ("nmem.txt", negatives)):
        (folder / file).write_bytes(text.encode("utf-8"))
        pins[file] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = folder / f"{name}.toml"
    path.write_text(f'''name = "{name}"
version = "1"
family = "stable-diffusion"
builder = "stable-diffusion"
track = "memorization"
seed = {seed}
suites = ["test"]

[data]
positives = {{ file = "mem.csv", sha256 = "{pins['mem.csv']}", format = "csv" }}
negatives = {{ file = "nmem.txt", sha256 = "{pins['nmem.txt']}", format = "txt" }}

[model]
id = "{pipe}"
conditional = true

[sampling]
generations_per_prompt = {gens}
steps = 3
guidance_scale = 7.5
scheduler = "DDIM"
{tail}''')
    return path
