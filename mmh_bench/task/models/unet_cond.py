"""Stable Diffusion's own denoiser architecture for the CPU text-to-image tasks (issue 24, item 2).

Why: the detectors the papers measured on Stable Diffusion read a ``UNet2DConditionModel``, whose
caption tokens enter through cross-attention layers in its down, mid and up blocks (16 of them on
SD 1 and 2; Ren et al.'s LE reads the fourth). The MLP of :mod:`.cross_attn` has three
cross-attention layers between fully connected blocks, not image positions. This module wraps a
small diffusers ``UNet2DConditionModel`` in pixel space behind the same interface as
:class:`~.cross_attn.CrossAttnDenoiser` (``net(y, t, text, mask, return_attention=, logit_scale=,
layer=)``), so the caption table, the training loop, the :class:`~.cross_attn.CrossAttnScoreModel`
adapter (eps, JVPs, cross-attention maps per layer, Ren's rescaling, the condition embedding) and
the storage serve both architectures unchanged.

Times: the adapter's continuous ``t`` in (0, 1] enters the UNet's sinusoidal embedding as
``1000 t``, the scale of SD's integer timesteps. Attention runs through explicit processors (plain
softmax of scaled dot products), because fused attention kernels have no forward-mode derivative
and the JVP detectors (sharpness, FLIPD) need one.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
from torch import nn

#: the sinusoidal timestep scale: SD's timesteps run 0 ... 999
TIME_SCALE = 1000.0


def _explicit_processors(unet: Any) -> None:
    from diffusers.models.attention_processor import AttnProcessor
    unet.set_attn_processor(AttnProcessor())


class UNetCondDenoiser(nn.Module):
    """eps(y, t, caption tokens) by a diffusers ``UNet2DConditionModel`` with cross-attention to the
    caption's token embeddings in the down blocks ``cross_blocks`` (0-based, finest first), their
    mirrored up blocks and the mid block.

    ``channels`` are the blocks' widths (one down and one up block each), ``layers`` the
    resnet/transformer layers per block; with ``layers`` = 1, two blocks and the default
    ``cross_blocks`` = (0,) the UNet has 4 cross-attention layers (down 1, mid 1, up 2), so Ren et
    al.'s layer 3 exists. Stable Diffusion attends at every resolution but the coarsest; on a CPU
    the finest one dominates the cost (self-attention over every pixel: 28x28 images train ~7x
    slower with it), so a task may attend only at the coarser ones. The image side must be
    divisible by ``2 ** (len(channels) - 1)``.
    """

    def __init__(self, shape: Sequence[int], channels: Sequence[int] = (32, 64), layers: int = 1,
                 head_dim: int = 8, text_dim: int = 384, groups: int = 8,
                 cross_blocks: Sequence[int] = (0,)) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        shape = [int(s) for s in shape]
        channels = [int(c) for c in channels]
        if len(shape) != 3:
            raise ValueError(f"a UNet needs images [channels, height, width], got shape {shape}")
        if len(channels) < 2:
            raise ValueError("channels needs at least two block widths (one cross-attention down and up block each)")
        step = 2 ** (len(channels) - 1)
        if shape[1] % step or shape[2] % step:
            raise ValueError(f"image side {shape[1:]} must be divisible by {step} for {len(channels)} blocks")
        if any(c % groups for c in channels):
            raise ValueError(f"every block width {channels} must be a multiple of groups={groups}")
        n = len(channels)
        cross = sorted({int(b) for b in cross_blocks})
        if not cross or not all(0 <= b < n for b in cross):
            raise ValueError(f"cross_blocks {list(cross_blocks)} must name blocks 0-{n - 1} (at least one)")
        self.config = {"shape": shape, "channels": channels, "layers": int(layers), "head_dim": int(head_dim),
                       "text_dim": int(text_dim), "groups": int(groups), "cross_blocks": cross}
        down = tuple("CrossAttnDownBlock2D" if b in cross else "DownBlock2D" for b in range(n))
        self.unet = UNet2DConditionModel(
            sample_size=shape[1], in_channels=shape[0], out_channels=shape[0], layers_per_block=int(layers),
            block_out_channels=tuple(channels),
            down_block_types=down, up_block_types=tuple(b.replace("Down", "Up") for b in reversed(down)),
            cross_attention_dim=int(text_dim), attention_head_dim=int(head_dim), norm_num_groups=int(groups))
        _explicit_processors(self.unet)

    @property
    def cross(self) -> list[nn.Module]:
        """The cross-attention modules, in the order a forward runs them (down, mid, up)."""
        return [m for name, m in self.unet.named_modules() if name.endswith("attn2")]

    @contextlib.contextmanager
    def _recording(self, store: list[torch.Tensor] | None, logit_scale: float) -> Iterator[None]:
        from .stable_diffusion import _ExplicitCrossAttention, _processors
        with _processors(self.unet, lambda: _ExplicitCrossAttention(store, logit_scale), only_cross=True):
            yield

    def forward(self, y: torch.Tensor, t: torch.Tensor, text: torch.Tensor, mask: torch.Tensor,
                return_attention: bool = False, logit_scale: float = 1.0,
                layer: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`CrossAttnDenoiser.forward`: ``return_attention`` adds the attention over
        caption tokens ``[n, L]`` (heads and image positions averaged) of every layer averaged
        (``layer=None``) or of one layer (0-based, forward order)."""
        n_layers = len(self.cross)
        if layer is not None and not 0 <= int(layer) < n_layers:
            raise ValueError(f"cross-attention layer {layer} does not exist; this model has {n_layers} "
                             f"(0-{n_layers - 1})")
        tt = t.reshape(-1).to(y.dtype) * TIME_SCALE
        kw = {"encoder_hidden_states": text, "encoder_attention_mask": mask.bool()}
        if not return_attention and logit_scale == 1.0:
            return self.unet(y, tt, **kw).sample
        store: list[torch.Tensor] = []
        with self._recording(store if return_attention else None, logit_scale):
            out = self.unet(y, tt, **kw).sample
        if not return_attention:
            return out
        return out, (torch.stack(store).mean(0) if layer is None else store[int(layer)])
