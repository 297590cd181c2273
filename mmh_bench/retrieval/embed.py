"""Embedders: what turns images (or anything) into the vectors that retrieval compares.

Copy detection is only as good as its embedding. Pixels are the default (exact for the synthetic
tasks); for real images users bring a copy-detection model such as SSCD, or CLIP / DINO features,
from their own machine. Nothing is downloaded: a model is a local file checked against the sha256
the user states, so an index records exactly which embedding built it.

    emb = load_torchscript("sscd_disc_mixup.torchscript.pt", sha256="<64 hex digits>")
    feats = emb(images)                      # (n, d) float32, in batches, no gradients
    index = TrainIndex(feats_train, metric="cosine", embedding=emb.name)
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from mmh_bench.files import sha256_file

from .vector_index import normalize_rows


class EmbedderError(ValueError):
    """A model file is missing, fails its checksum, or gives unusable output."""


@runtime_checkable
class Embedder(Protocol):
    """Anything with a ``name`` (recorded next to indexes) that maps a batch to (n, d) rows."""

    name: str

    def __call__(self, x: Any) -> np.ndarray: ...


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


class PixelEmbedder:
    """Raw pixels as the embedding: flatten each item; uint8 images are scaled to [0, 1]."""

    def __init__(self, scale: float | None = None, normalize: bool = False, name: str = "pixels") -> None:
        self.scale, self.normalize, self.name = scale, normalize, name

    def __call__(self, x: Any) -> np.ndarray:
        arr = _to_numpy(x)
        rows = arr.reshape(len(arr), -1).astype(np.float32)
        if self.scale is not None:
            rows *= np.float32(self.scale)
        elif arr.dtype == np.uint8:
            rows /= np.float32(255.0)
        return normalize_rows(rows) if self.normalize else rows


def _is_torch(fn: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return isinstance(fn, (torch.nn.Module, torch.jit.ScriptModule, torch.jit.ScriptFunction))


class FunctionEmbedder:
    """Wrap any callable or torch module as an embedder: batches, no gradients, float32 rows.

    ``tensor_input`` (default: True for torch modules) converts each batch to a float32 tensor on
    ``device``; otherwise the callable gets the numpy batch. ``preprocess`` runs on each batch
    first (resize, crop, normalise as the model expects). A tuple/list output uses its first item.
    """

    def __init__(self, fn: Callable[[Any], Any], name: str, *, batch_size: int = 64,
                 normalize: bool = False, device: str = "cpu", tensor_input: bool | None = None,
                 preprocess: Callable[[Any], Any] | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        self.fn, self.name, self.batch_size = fn, name, int(batch_size)
        self.normalize, self.device, self.preprocess = normalize, device, preprocess
        self.tensor_input = _is_torch(fn) if tensor_input is None else tensor_input
        if hasattr(fn, "eval") and _is_torch(fn):
            fn.eval()
            if hasattr(fn, "to"):
                fn.to(device)

    def _run(self, batch: Any) -> np.ndarray:
        if self.preprocess is not None:
            batch = self.preprocess(batch)
        if self.tensor_input:
            import torch
            t = batch if isinstance(batch, torch.Tensor) else torch.as_tensor(np.asarray(batch))
            t = t.to(self.device, dtype=torch.float32)
            with torch.inference_mode():
                out = self.fn(t)
        else:
            out = self.fn(batch)
        if isinstance(out, (tuple, list)):
            out = out[0]
        arr = _to_numpy(out)
        if arr.ndim == 0 or len(arr) != len(batch):
            raise EmbedderError(f"{self.name} returned shape {arr.shape} for a batch of {len(batch)}")
        return arr.reshape(len(arr), -1).astype(np.float32)

    def __call__(self, x: Any, progress: bool = False) -> np.ndarray:
        n = len(x)
        parts = [self._run(x[s:s + self.batch_size])
                 for s in tqdm(range(0, n, self.batch_size), desc=f"embed ({self.name})",
                               unit="batch", disable=not progress, leave=False)]
        rows = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        return normalize_rows(rows) if self.normalize and len(rows) else rows


def verify_sha256(path: str | os.PathLike, sha256: str) -> Path:
    """Check a local model file against the checksum the user states; return its path."""
    path = Path(path)
    if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256 or ""):
        raise EmbedderError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    got = sha256_file(path)
    if got != sha256.lower():
        raise EmbedderError(f"checksum mismatch for {path}: sha256 is {got}, expected {sha256.lower()}")
    return path


def load_torchscript(path: str | os.PathLike, sha256: str, *, name: str | None = None,
                     device: str = "cpu", **options: Any) -> FunctionEmbedder:
    """A TorchScript model (e.g. SSCD's released ``.torchscript.pt``) verified before loading.

    TorchScript archives are read by TorchScript's own loader, not by Python's pickle.
    """
    import torch
    path = verify_sha256(path, sha256)
    model = torch.jit.load(str(path), map_location=device)
    return FunctionEmbedder(model, name or f"torchscript:{path.name}@{sha256[:12].lower()}",
                            device=device, **options)


def load_module_weights(module: Any, path: str | os.PathLike, sha256: str, *, name: str | None = None,
                        strict: bool = True, device: str = "cpu", **options: Any) -> FunctionEmbedder:
    """Load verified safetensors weights into a torch module the user built (CLIP, DINO...)."""
    from safetensors.torch import load_file
    path = verify_sha256(path, sha256)
    module.load_state_dict(load_file(str(path), device=device), strict=strict)
    return FunctionEmbedder(module, name or f"{type(module).__name__}:{path.name}@{sha256[:12].lower()}",
                            device=device, **options)


def embed(x: Any, embedder: Callable[[Any], Any] | None = None, *, batch_size: int = 256,
          progress: bool = False) -> np.ndarray:
    """Embed ``x`` with ``embedder`` (default: pixels) in batches; any callable is accepted."""
    if embedder is None:
        embedder = PixelEmbedder()
    if isinstance(embedder, FunctionEmbedder):
        return embedder(x, progress=progress)
    parts = [np.asarray(embedder(x[s:s + batch_size]), dtype=np.float32).reshape(min(batch_size, len(x) - s), -1)
             for s in tqdm(range(0, len(x), batch_size), desc="embed", unit="batch",
                           disable=not progress, leave=False)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
