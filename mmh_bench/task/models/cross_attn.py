"""A small text-conditional diffusion model with cross-attention to caption tokens.

Why: the Stable Diffusion detectors (CFG-norm, sharpness, cross-attention entropy, conditional
FLIPD) need a model whose condition enters through cross-attention over text tokens, as in SD's
UNet. This is the laptop-scale analogue: a pixel-space denoiser whose hidden state attends to the
caption's token embeddings (from a frozen sentence encoder) after every block.
Attention is written out (softmax of scaled dot products) so forward-mode JVPs work and the
attention probabilities can be read back.

Conditions are caption ids into the model's caption table (token embeddings + mask, stored with
the weights); None, or the table's ``null_id``, is the empty caption used for classifier-free
guidance, as SD uses the empty prompt.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mmh_bench.api.score_model import ScoreModel, vp_linear_alpha_bar
from .mlp import time_features, fit_eps

MASKED = -1e9  # logit of a padding token (finite, so forward-mode derivatives stay finite)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           first_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax(q k^T / sqrt(d)) v, probabilities)``; ``mask [n, Lk]`` True where a key is real;
    ``first_scale`` multiplies the first key's logits (1: unchanged)."""
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if first_scale != 1.0:
        logits = torch.cat([logits[..., :1] * first_scale, logits[..., 1:]], dim=-1)
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, None, :], MASKED)
    p = torch.softmax(logits, dim=-1)
    return p @ v, p


class CrossAttention(nn.Module):
    """The hidden state, cut into ``queries`` tokens, attends to the caption tokens."""

    def __init__(self, hidden: int, queries: int, heads: int, text_width: int) -> None:
        super().__init__()
        if hidden % (queries * heads):
            raise ValueError(f"hidden={hidden} must be a multiple of queries*heads={queries * heads}")
        self.queries, self.heads = queries, heads
        self.width = hidden // queries
        self.norm = nn.LayerNorm(hidden)
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(text_width, 2 * self.width)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, text: torch.Tensor, mask: torch.Tensor,
                logit_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        n, dh = h.shape[0], self.width // self.heads
        q = self.q(self.norm(h)).reshape(n, self.queries, self.heads, dh).transpose(1, 2)
        k, v = (z.reshape(n, z.shape[1], self.heads, dh).transpose(1, 2)
                for z in self.kv(text).chunk(2, dim=-1))
        o, p = attend(q, k, v, mask, first_scale=logit_scale)  # o [n, heads, queries, dh], p [n, heads, queries, L]
        return self.out(o.transpose(1, 2).reshape(n, -1)), p


class CrossAttnDenoiser(nn.Module):
    """eps(y, t, caption tokens): a residual MLP over pixels in which, after every block, the
    hidden state (as ``queries`` tokens) cross-attends to the caption's token embeddings.

    A patch transformer (2x2 patches as tokens, width 96, 2 blocks) was measured first and cost
    2-3x more per training step and per sample on CPU at 8x8; the MLP trunk is also what memorizes
    small image sets within the build budget.
    """

    def __init__(self, shape: Sequence[int], hidden: int = 384, depth: int = 3, queries: int = 4,
                 heads: int = 4, text_dim: int = 384, text_width: int = 64) -> None:
        super().__init__()
        shape = [int(s) for s in shape]
        self.config = {"shape": shape, "hidden": hidden, "depth": depth, "queries": queries,
                       "heads": heads, "text_dim": text_dim, "text_width": text_width}
        self.dim = int(np.prod(shape))
        self.inp = nn.Linear(self.dim + 32, hidden)
        self.text_in = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, text_width))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.cross = nn.ModuleList(CrossAttention(hidden, queries, heads, text_width) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, self.dim))

    def forward(self, y: torch.Tensor, t: torch.Tensor, text: torch.Tensor, mask: torch.Tensor,
                return_attention: bool = False, logit_scale: float = 1.0,
                layer: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``y [n, *shape]``, ``t [n]``, ``text [n, L, text_dim]``, ``mask [n, L]`` (bool);
        ``return_attention``: also the attention over caption tokens ``[n, L]`` (heads and queries
        averaged), of every layer averaged (``layer=None``) or of layer ``layer`` (0-based, in
        the order the blocks run)."""
        if layer is not None and not 0 <= int(layer) < len(self.cross):
            raise ValueError(f"cross-attention layer {layer} does not exist; this model has {len(self.cross)} "
                             f"(0-{len(self.cross) - 1})")
        n = y.shape[0]
        h = self.inp(torch.cat([y.reshape(n, -1), time_features(t)], dim=1))
        ctx = self.text_in(text)
        probs = []
        for block, cross in zip(self.blocks, self.cross):
            h = h + block(h)
            a, p = cross(h, ctx, mask, logit_scale)
            h = h + a
            probs.append(p)
        out = self.out(h).reshape(y.shape)
        if return_attention:
            # mean over heads and queries (and layers, unless one is asked) -> one distribution over caption tokens
            per_layer = [p.mean(dim=(1, 2)) for p in probs]
            return out, (torch.stack(per_layer).mean(0) if layer is None else per_layer[int(layer)])
        return out


class CaptionTable:
    """Token embeddings ``[n_captions, L, dim]`` and masks of every caption a model knows."""

    def __init__(self, tokens: torch.Tensor, mask: torch.Tensor, null_id: int) -> None:
        self.tokens = tokens.float()
        self.mask = mask.bool()
        self.null_id = int(null_id)

    def __len__(self) -> int:
        return len(self.tokens)

    def lookup(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens[ids], self.mask[ids]


#: the denoiser architectures of the text-to-image tasks (``[model] arch``)
ARCHS = ("mlp", "unet")


def train_cross_attn(x: np.ndarray, caption_ids: np.ndarray, table: CaptionTable, *,
                     hidden: int = 384, depth: int = 3, queries: int = 4, heads: int = 4,
                     text_width: int = 64, steps: int = 6000, batch_size: int = 64, lr: float = 2e-3,
                     p_uncond: float = 0.1, t_power: float = 1.0, seed: int = 0,
                     progress: bool = True, desc: str = "training", arch: str = "mlp",
                     unet: dict[str, Any] | None = None) -> nn.Module:
    """A :class:`CrossAttnDenoiser` (``arch="mlp"``) or a
    :class:`~mmh_bench.task.models.unet_cond.UNetCondDenoiser` (``arch="unet"``, built from the
    keyword arguments in ``unet``) fitted by :func:`~mmh_bench.task.models.mlp.fit_eps`; caption
    dropout replaces a caption by the empty one (``table.null_id``) with probability ``p_uncond``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown denoiser architecture {arch!r}; known: {ARCHS}")
    torch.manual_seed(seed)
    data = torch.as_tensor(x, dtype=torch.float32)
    ids = torch.as_tensor(caption_ids, dtype=torch.long)
    if arch == "unet":
        from .unet_cond import UNetCondDenoiser
        net: nn.Module = UNetCondDenoiser(data.shape[1:], text_dim=table.tokens.shape[-1], **(unet or {}))
    else:
        net = CrossAttnDenoiser(data.shape[1:], hidden, depth, queries, heads, table.tokens.shape[-1],
                                text_width)
    return fit_eps(net, data, ids, table.null_id, steps=steps, batch_size=batch_size, lr=lr,
                   p_uncond=p_uncond, t_power=t_power, seed=seed, progress=progress, desc=desc,
                   forward=lambda m, y, t, c: m(y, t, *table.lookup(c)))


class CrossAttnScoreModel(ScoreModel):
    """The :class:`ScoreModel` adapter over :class:`CrossAttnDenoiser`.

    A condition is a caption id (int) into the model's caption table; None is the empty caption.
    A string is encoded with the task's text encoder on first use (needs the encoder installed).
    """

    capabilities = frozenset({"cross_attention", "condition_embedding", "attention_rescale"})

    def __init__(self, net: nn.Module, table: CaptionTable,
                 captions: Sequence[str] | None = None, encoder: Any = None) -> None:
        super().__init__()
        self.net = net.eval()
        self.count_module(self.net)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.shape = tuple(net.config["shape"])
        self.conditional = True
        self.table = table
        self.captions = list(captions) if captions is not None else []
        self._encoder = encoder
        self._extra: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def alpha_bar(self, t: Any) -> torch.Tensor:
        return vp_linear_alpha_bar(t)

    def _encode_text(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        if text not in self._extra:
            if self._encoder is None:
                from mmh_bench.task.data.text import TextEncoder
                self._encoder = TextEncoder(max_tokens=self.table.tokens.shape[1])
            tok, mask = self._encoder.encode([text])
            self._extra[text] = (torch.as_tensor(tok[0]), torch.as_tensor(mask[0]))
        return self._extra[text]

    def _text(self, cond: Sequence[Any] | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        entries = [None] * n if cond is None else list(cond)
        toks, masks = [], []
        for c in entries:
            if isinstance(c, str):
                tok, mask = self._encode_text(c)
            else:
                i = self.table.null_id if c is None or int(c) < 0 else int(c)
                if i >= len(self.table):
                    raise ValueError(f"caption id {i} is outside the model's {len(self.table)} captions")
                tok, mask = self.table.tokens[i], self.table.mask[i]
            toks.append(tok)
            masks.append(mask)
        return torch.stack(toks), torch.stack(masks)

    def _eps(self, y: torch.Tensor, t: torch.Tensor, cond: Sequence[Any] | None) -> torch.Tensor:
        text, mask = self._text(cond, y.shape[0])
        return self.net(y, t, text, mask, logit_scale=self.first_token_scale)

    #: Ren et al.'s mitigation: the attention logit of the first (beginning) token is multiplied
    #: by this factor in every cross-attention layer (1 = the model as trained)
    first_token_scale: float = 1.0

    @contextmanager
    def rescaled_attention(self, scale: float) -> Iterator[None]:
        """Within the block, every cross-attention layer multiplies the first token's logits by
        ``scale`` (Ren et al.'s mitigation; capability ``"attention_rescale"``)."""
        old, self.first_token_scale = self.first_token_scale, float(scale)
        try:
            yield
        finally:
            self.first_token_scale = old

    def condition_embedding(self, cond: Sequence[Any]) -> torch.Tensor:
        """The caption token embeddings each condition feeds the cross-attention, ``[n, L, dim]``
        (padding positions stay masked: :meth:`eps_embedded` reads the masks of ``cond``)."""
        return self._text(cond, len(cond))[0].clone()

    def _eps_embedded(self, y: torch.Tensor, t: torch.Tensor, emb: torch.Tensor,
                      cond: Sequence[Any]) -> torch.Tensor:
        return self.net(y, t, emb, self._text(cond, y.shape[0])[1], logit_scale=self.first_token_scale)

    @property
    def cross_attention_layers(self) -> int:
        return len(self.net.cross)

    @torch.no_grad()
    def cross_attention(self, x: Any, t: Any, cond: Sequence[Any], layer: int | None = None) -> torch.Tensor:
        y, tt = self._prepare(x, t)
        if cond is None:
            raise ValueError("cross_attention needs one condition per sample")
        cond = self._check_cond(cond, y.shape[0])
        if layer is not None and not 0 <= int(layer) < self.cross_attention_layers:
            raise ValueError(f"cross-attention layer {layer} does not exist; this model has "
                             f"{self.cross_attention_layers} (0-{self.cross_attention_layers - 1})")
        self.nfe += y.shape[0]
        text, mask = self._text(cond, y.shape[0])
        return self.net(y, tt, text, mask, return_attention=True, layer=layer)[1]


# -- storage ------------------------------------------------------------------------------------
def save_cross_attn(net: nn.Module, table: CaptionTable, captions: Sequence[str], path: Path) -> None:
    """Weights and caption table as safetensors, config (with the architecture) and caption texts
    as JSON (no pickle)."""
    from .unet_cond import UNetCondDenoiser
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path / "weights.safetensors"))
    save_file({"tokens": table.tokens.contiguous(), "mask": table.mask.to(torch.uint8).contiguous()},
              str(path / "captions.safetensors"))
    arch = "unet" if isinstance(net, UNetCondDenoiser) else "mlp"
    cfg = {"net": net.config, "null_id": table.null_id}
    if arch != "mlp":  # the MLP's config files stay as they were, so published instances keep their bytes
        cfg["arch"] = arch
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "captions.json").write_text(json.dumps(list(captions), ensure_ascii=False))


def load_cross_attn(path: Path) -> CrossAttnScoreModel:
    path = Path(path)
    cfg = json.loads((path / "config.json").read_text())
    arch = cfg.get("arch", "mlp")
    if arch == "unet":
        from .unet_cond import UNetCondDenoiser
        net: nn.Module = UNetCondDenoiser(**cfg["net"])
    elif arch == "mlp":
        net = CrossAttnDenoiser(**cfg["net"])
    else:
        raise ValueError(f"{path}: unknown denoiser architecture {arch!r}; known: {ARCHS}")
    net.load_state_dict(load_file(str(path / "weights.safetensors")))
    tab = load_file(str(path / "captions.safetensors"))
    table = CaptionTable(tab["tokens"], tab["mask"].bool(), cfg["null_id"])
    captions = json.loads((path / "captions.json").read_text())
    return CrossAttnScoreModel(net, table, captions)


def forget_conditions(path: Path) -> None:
    """Make the saved model in ``path`` unconditional: every caption's tokens become the empty
    caption's and the caption texts are dropped (see :func:`mmh_bench.task.models.mlp.forget_conditions`)."""
    path = Path(path)
    tab = load_file(str(path / "captions.safetensors"))
    null_id = int(json.loads((path / "config.json").read_text())["null_id"])
    out = {k: v[null_id:null_id + 1].expand_as(v).contiguous() for k, v in tab.items()}
    for name in ("captions.safetensors", "captions.json"):
        (path / name).unlink()
    save_file(out, str(path / "captions.safetensors"))
    (path / "captions.json").write_text("[]")
