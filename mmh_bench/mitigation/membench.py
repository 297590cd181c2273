"""MemBench's scores for Stable Diffusion generations: SSCD copy similarity and CLIP score.

The protocol follows MemBench (Hong, Oh, Sung; ``run_mitigation.py`` at the commit named in the
published-numbers README, section G): each generation's copy similarity is its largest SSCD cosine
similarity to the ground-truth training images of *its own* prompt; a generation above 0.5 counts
as a copy; the prompt is kept when the image still matches it by CLIP. Images reach SSCD resized
to 288 x 288 and ImageNet-normalised, as MemBench feeds ``sscd_disc_large``. The CLIP score is the
standard one (Hessel et al. 2021, as torchmetrics' ``CLIPScore``): ``100 * max(cos(image, text), 0)``;
MemBench reports the raw cosine mean, i.e. this divided by 100 wherever it is positive.

Weights are the user's: SSCD as a TorchScript file checked against the sha256 the user states
(:func:`mmh_bench.retrieval.embed.load_torchscript`), CLIP from a local folder or a hub id pinned
to a revision. MemBench's CLIP is OpenCLIP ViT-g-14 (laion2b_s12b_b42k), whose hub repository
:data:`DEFAULT_CLIP` names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from mmh_bench.files import sha256_file
from mmh_bench.retrieval.embed import FunctionEmbedder, load_torchscript
from mmh_bench.retrieval.vector_index import normalize_rows

#: MemBench's copy threshold on the maximum SSCD similarity
SSCD_THRESHOLD = 0.5
#: side of the square every image is resized to before SSCD (MemBench's ``Resize((288, 288))``)
SSCD_SIZE = 288
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: MemBench's CLIP model (OpenCLIP ViT-g-14 trained on LAION-2B, s12b b42k), as a hub repository
DEFAULT_CLIP = "laion/CLIP-ViT-g-14-laion2B-s12B-b42K"
#: latents decoded (and images embedded) per VAE call
DECODE_BATCH = 8


# -- the metrics ---------------------------------------------------------------------------------
def max_sscd(gen_emb: np.ndarray, gt_emb: np.ndarray, gt_prompt_ids: np.ndarray,
             gen_prompt_ids: np.ndarray) -> np.ndarray:
    """Each generation's largest cosine similarity to the ground-truth images of its own prompt
    (rows L2-normalised here; images of other prompts are ignored). Raises when a generation's
    prompt has no ground-truth image."""
    gen, gt = normalize_rows(np.asarray(gen_emb, np.float32)), normalize_rows(np.asarray(gt_emb, np.float32))
    gen_ids, gt_ids = np.asarray(gen_prompt_ids), np.asarray(gt_prompt_ids)
    lacking = np.setdiff1d(gen_ids, gt_ids)
    if lacking.size:
        raise ValueError(f"prompt id(s) {lacking[:5].tolist()} have generations but no ground-truth image")
    out = np.empty(len(gen), dtype=np.float64)
    for pid in np.unique(gen_ids):
        rows = gen_ids == pid
        out[rows] = (gen[rows] @ gt[gt_ids == pid].T).max(axis=1)
    return out


def copies(max_sim: np.ndarray, threshold: float = SSCD_THRESHOLD) -> np.ndarray:
    """Which generations count as copies: maximum SSCD similarity above ``threshold``."""
    return np.asarray(max_sim) > threshold


def clip_scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """CLIP score of each (image, text) row pair: ``100 * max(cos, 0)``, in [0, 100]."""
    img = normalize_rows(np.asarray(image_emb, np.float32))
    txt = normalize_rows(np.asarray(text_emb, np.float32))
    if img.shape != txt.shape:
        raise ValueError(f"image and text embeddings pair row by row; got {img.shape} and {txt.shape}")
    cos = np.einsum("ij,ij->i", img, txt, dtype=np.float64)
    return 100.0 * np.clip(cos, 0.0, 1.0)


# -- SSCD ----------------------------------------------------------------------------------------
def sscd_batch(images: Sequence[Any]) -> torch.Tensor:
    """RGB ``PIL.Image`` s as SSCD's input: 288 x 288 (bilinear), ImageNet mean and std, ``[n, 3, 288, 288]``."""
    from PIL import Image
    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    size = (SSCD_SIZE, SSCD_SIZE)
    rows = [(np.asarray(im.convert("RGB").resize(size, Image.Resampling.BILINEAR), np.float32) / 255 - mean) / std
            for im in images]
    return torch.from_numpy(np.stack(rows).transpose(0, 3, 1, 2).copy())


def load_sscd(path: str | Path, sha256: str, *, device: str | None = None, batch_size: int = 32) -> FunctionEmbedder:
    """SSCD's released TorchScript file (e.g. ``sscd_disc_large.torchscript.pt``, MemBench's),
    checked against ``sha256``; it maps a list of images to L2-normalised rows."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return load_torchscript(path, sha256, device=dev, preprocess=sscd_batch, normalize=True, batch_size=batch_size)


# -- CLIP ----------------------------------------------------------------------------------------
class ClipScorer:
    """A ``transformers`` CLIP model and its processor: image and text features for the CLIP score."""

    def __init__(self, model: Any, processor: Any, name: str, device: str | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.processor, self.name = processor, name

    @staticmethod
    def _features(out: Any) -> torch.Tensor:
        """Projected features, whether ``get_*_features`` returns them or an output holding them."""
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @torch.no_grad()
    def image_features(self, images: Sequence[Any]) -> np.ndarray:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        feats = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
        return self._features(feats).float().cpu().numpy()

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        tok = self.processor(text=list(texts), padding=True, truncation=True, return_tensors="pt")
        feats = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                             attention_mask=tok["attention_mask"].to(self.device))
        return self._features(feats).float().cpu().numpy()


def load_clip(source: str | Path = DEFAULT_CLIP, revision: str | None = None, *,
              device: str | None = None) -> ClipScorer:
    """CLIP from a local ``transformers`` folder, or from the hub (cache) at a pinned ``revision``
    (a commit hash: a branch name would let the score drift). The name records which weights."""
    from transformers import CLIPModel, CLIPProcessor
    folder = Path(str(source)).expanduser()
    if folder.is_dir():
        weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
        digest = sha256_file(weights[0])[:12] if weights else "unweighted"
        name, kwargs = f"{folder.name}@{digest}", {"local_files_only": True}
        source = str(folder)
    elif not revision:
        raise ValueError(f"CLIP weights {source!r} from the hub need a pinned revision (the commit hash "
                         "of the weights you score with), or a local folder")
    else:
        name, kwargs = f"{source}@{revision}", {"revision": revision}
    try:
        model = CLIPModel.from_pretrained(str(source), **kwargs)
        processor = CLIPProcessor.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load CLIP from {str(source)!r}: {exc}") from None
    return ClipScorer(model, processor, name, device)


# -- latents to images ---------------------------------------------------------------------------
def decode_latents(pipe: Any, latents: np.ndarray, batch_size: int = DECODE_BATCH) -> Iterator[list[Any]]:
    """The images of Stable Diffusion latents (the UNet's, i.e. VAE latents times the VAE's
    scaling factor), as RGB ``PIL.Image`` s in batches: decoded by ``pipe.vae`` and quantised to
    8 bits as the pipeline's own ``output_type="pil"``."""
    from PIL import Image
    vae = pipe.vae
    scale = float(vae.config.scaling_factor)
    for s in range(0, len(latents), batch_size):
        z = torch.as_tensor(np.asarray(latents[s:s + batch_size]), dtype=torch.float32) / scale
        with torch.no_grad():
            x = vae.decode(z.to(vae.device, vae.dtype)).sample.float()
        x = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        yield [Image.fromarray(a) for a in (x * 255).round().astype(np.uint8)]
