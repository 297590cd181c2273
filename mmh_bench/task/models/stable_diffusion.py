"""Stable Diffusion behind the :class:`~mmh_bench.api.score_model.ScoreModel` interface.

Samples are the UNet's latents (the VAE latents already multiplied by the VAE scaling factor),
shape ``[4, h, w]``. Continuous time ``t`` in (0, 1] maps to the scheduler's discrete training
timestep ``k = ceil(t T) - 1`` (T = 1000 for SD), and ``alpha_bar(t)`` is the scheduler's own
``alphas_cumprod[k]``, so a detector that noises with ``alpha_bar(t)`` and queries ``eps(., t)``
talks to the network at exactly the step it was trained for. Conditions are prompt ids into the
task's prompt table (or prompt strings); ``None`` is the empty prompt, the unconditional branch
of classifier-free guidance. v-prediction checkpoints (SD 2.x at 768 px) are converted to eps.

Precision and memory. Generation and forward-only scoring run in fp16 on a GPU (as Wen et al. and
Ren et al. ran SD); forward-mode JVPs run in fp32 (as Jeon et al. and the MMH authors' FLIPD code
do), and :meth:`StableDiffusionScoreModel.full_precision` lets a detector run its forwards in fp32
too (``sharpness`` does, for its guidance difference). A JVP materialises attention maps (fused
kernels have no forward-mode derivative), so JVPs compute attention in slices of heads. Rows per
network call are chosen from free device memory unless set (``rows_per_call``, or the environment
variable ``MMH_BENCH_SD_ROWS_PER_CALL``), and halved on an out-of-memory error. Results come back
as float32 on the CPU so detectors written against the small CPU models run unchanged.

Longer than ~400 lines: the pipeline adapter, its attention hooks and the cost formulas must agree
with each other line by line, so they stay in one file.

Longer than ~400 lines: one wrapper for a diffusers pipeline (loading, weight checks, the
score-model interface, replayable DDIM and cross-attention capture), which must stay consistent.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from mmh_bench.api.score_model import ScoreModel

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.sampler import Sampler

#: latent samples generated per pipeline call when building a task
GEN_BATCH = 8
#: environment variable that fixes the rows per network call when scoring (default: from free memory)
ENV_ROWS = "MMH_BENCH_SD_ROWS_PER_CALL"
#: rows per call on the CPU, and the most ever chosen automatically
CPU_ROWS, MAX_AUTO_ROWS = 16, 64
#: share of free device memory the automatic choice plans to use
MEMORY_SHARE = 0.7
#: peak of one forward-mode JVP through one materialised attention layer, in attention maps
#: (primal and tangent of the scores and of the softmax, and their products; the issue's CPU
#: measurement, scaled); applies per slice of heads
JVP_MAPS = 7
#: activation tensors of the top block's size (channels x latent pixels) alive at a forward's
#: peak, per row (an estimate from SD's UNet layout: skip connections, GEGLU input, residuals);
#: a JVP holds primal and tangent of each
FORWARD_ACTS = 40
#: Stable Diffusion generations a task may require: what its checkpoints look like
GENERATIONS: dict[str, dict[str, Any]] = {
    "sd1": {"cross_attention_dim": 768, "sample_size": 64, "prediction_type": "epsilon"},
    "sd2": {"cross_attention_dim": 1024, "sample_size": 96, "prediction_type": "v_prediction"},
    "sd2-base": {"cross_attention_dim": 1024, "sample_size": 64, "prediction_type": "epsilon"},
}
#: a Hugging Face hub id: ``name`` or ``owner/name`` (dots allowed, e.g. ``owner/sd-v1.5``)
_HUB_ID = re.compile(r"^[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9])?(?:/[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9])?)?$")
_PIPES: dict[tuple[str, str, str], Any] = {}
_SOURCE_OVERRIDE: list[str] = []


class ModelLoadError(ValueError):
    """The Stable Diffusion weights could not be loaded, or are not the ones a task was built with."""


# -- where the weights come from -----------------------------------------------------------------
@contextlib.contextmanager
def model_source(source: str | Path | None) -> Iterator[None]:
    """Within the block, Stable Diffusion tasks build and evaluate with ``source`` (the CLI's
    ``--model``) instead of the hub id named in their spec. ``None`` changes nothing."""
    if source is None:
        yield
        return
    _SOURCE_OVERRIDE.append(str(source))
    try:
        yield
    finally:
        _SOURCE_OVERRIDE.pop()


def resolve_source(spec_id: str | None) -> str:
    """The active override, else the spec's ``[model] id``."""
    if _SOURCE_OVERRIDE:
        return _SOURCE_OVERRIDE[-1]
    if spec_id is None:
        raise ModelLoadError("Stable Diffusion task spec has no [model] id and no --model was given")
    return spec_id


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype:
    """fp16 on a GPU (how the papers ran SD), fp32 on the CPU where fp16 kernels are slow or missing."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is not None:
        return dtype
    return torch.float16 if device.type == "cuda" else torch.float32


def load_pipeline(source: str | Path, *, device: str | torch.device | None = None,
                  dtype: torch.dtype | str | None = None) -> Any:
    """A ``StableDiffusionPipeline`` from a local folder or a hub id, on ``device``, frozen.

    A hub id resolves through the Hugging Face cache (set ``HF_HUB_OFFLINE=1`` to forbid network
    access). The last pipeline is kept so a build and the evaluation that follows load it once.
    """
    from diffusers import StableDiffusionPipeline

    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    key = (str(source), str(dev), str(dt))
    if key in _PIPES:
        return _PIPES[key]
    kind, name = source_kind(source)
    kwargs: dict[str, Any] = {"torch_dtype": dt, "safety_checker": None, "requires_safety_checker": False}
    if kind == "folder":
        kwargs["local_files_only"] = True
    try:
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype; older ones need it
            warnings.simplefilter("ignore", FutureWarning)
            pipe = StableDiffusionPipeline.from_pretrained(name, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        also = "" if kind == "folder" else " (no local folder of that name either)"
        raise ModelLoadError(f"cannot load Stable Diffusion from {name!r}{also}: "
                             f"{exc}. Pass --model with a local diffusers folder, or fetch the weights into "
                             "the Hugging Face cache first") from None
    pipe = pipe.to(dev)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    _PIPES.clear()  # one SD model in memory at a time
    _PIPES[key] = pipe
    return pipe


def source_kind(source: str | Path) -> tuple[str, str]:
    """``("folder", path)`` for an existing folder, ``("hub", id)`` for a hub id (``owner/name``,
    dots allowed); anything else is a missing folder."""
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return "folder", str(path)
    if _HUB_ID.match(str(source)) and ".." not in str(source):
        return "hub", str(source)
    raise ModelLoadError(f"model folder {str(source)!r} does not exist")


def check_generation(pipe: Any, generation: str | None, source: str = "the model") -> None:
    """Refuse weights of another Stable Diffusion generation than the task's (e.g. SD 1 weights
    for the SD 2 prompts), naming what differs. ``None`` checks nothing."""
    if generation is None:
        return
    if generation not in GENERATIONS:
        raise ModelLoadError(f"unknown Stable Diffusion generation {generation!r}; known: {', '.join(GENERATIONS)}")
    have = {"cross_attention_dim": pipe.unet.config.cross_attention_dim,
            "sample_size": pipe.unet.config.sample_size,
            "prediction_type": prediction_type(pipe)}
    diff = [f"{k} {have[k]} (a {generation} checkpoint has {v})" for k, v in GENERATIONS[generation].items()
            if have[k] != v]
    if diff:
        raise ModelLoadError(f"{source} is not a {generation} checkpoint: " + ", ".join(diff))


def prediction_type(pipe: Any) -> str:
    """What the UNet predicts ("epsilon" or "v_prediction"); a scheduler config without the key
    is diffusers' epsilon default."""
    return str(getattr(pipe.scheduler.config, "prediction_type", "epsilon"))


def fingerprint(pipe: Any) -> str:
    """Short identity of the weights: every tensor's name and shape, the values of the first and
    last tensor of each network, the noise schedule and the prediction type. Independent of the
    dtype the weights were loaded in and of library versions (configs, which gain keys with
    upgrades, are left out), so a cached build is never scored by a different model and never
    refused after an upgrade."""
    h = hashlib.sha256()
    for name in ("unet", "text_encoder", "vae"):
        params = sorted(getattr(pipe, name).state_dict().items())
        h.update(name.encode())
        h.update(json.dumps([(k, list(v.shape)) for k, v in params]).encode())
        for pname, p in (params[0], params[-1]):
            h.update(pname.encode())
            h.update(p.detach().to("cpu", torch.float16).contiguous().numpy().tobytes())
    h.update(json.dumps(np.asarray(pipe.scheduler.alphas_cumprod, dtype=np.float32).round(6).tolist()).encode())
    h.update(prediction_type(pipe).encode())
    return h.hexdigest()[:16]


# -- attention processors ------------------------------------------------------------------------
class _ExplicitCrossAttention:
    """A cross-attention processor that computes softmax probabilities explicitly: it keeps their
    mean over heads and image queries (``[batch, tokens]``) in ``store`` when given, and multiplies
    the first token's logits by ``first_scale`` (Ren et al.'s mitigation; 1 = the model as trained)."""

    def __init__(self, store: list[torch.Tensor] | None = None, first_scale: float = 1.0) -> None:
        self.store = store
        self.first_scale = float(first_scale)

    def _probs(self, attn: Any, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.first_scale == 1.0:
            return attn.get_attention_scores(query, key, mask)
        logits = attn.scale * torch.bmm(query.float(), key.float().transpose(-1, -2))
        logits = torch.cat([logits[..., :1] * self.first_scale, logits[..., 1:]], dim=-1)
        if mask is not None:
            logits = logits + mask
        return logits.softmax(dim=-1).to(query.dtype)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        four_d = hidden_states.ndim == 4
        if four_d:
            b, c, hh, ww = hidden_states.shape
            hidden_states = hidden_states.view(b, c, hh * ww).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = self._probs(attn, query, key, mask)  # [batch * heads, queries, tokens]
        if self.store is not None:
            self.store.append(probs.float().mean(1).view(batch, attn.heads, -1).mean(1))
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if four_d:
            out = out.transpose(-1, -2).reshape(b, c, hh, ww)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


_RecordingCrossAttention = _ExplicitCrossAttention  # the recording use, by its former name


@contextlib.contextmanager
def _processors(unet: Any, make: Any, only_cross: bool) -> Iterator[None]:
    saved = dict(unet.attn_processors)
    new = {name: (make() if (not only_cross or name.endswith("attn2.processor")) else proc)
           for name, proc in saved.items()}
    unet.set_attn_processor(new)
    try:
        yield
    finally:
        unet.set_attn_processor(saved)


# -- the adapter ---------------------------------------------------------------------------------
class StableDiffusionScoreModel(ScoreModel):
    """``ScoreModel`` over a diffusers ``StableDiffusionPipeline`` (latent space, CFG conditions).

    ``prompts`` is the task's prompt table: integer conditions index it. Strings are used as
    prompts directly. Text embeddings are cached per prompt. ``rows_per_call`` fixes the rows per
    network call (default: ``$MMH_BENCH_SD_ROWS_PER_CALL``, else chosen from free device memory
    per kind of call); ``attention_slice`` the heads per attention slice in a JVP (default: from
    free memory on a GPU, unsliced on the CPU); ``jvp_dtype`` the precision of JVPs.
    Capabilities: cross-attention maps, the prompt embedding (:meth:`condition_embedding`,
    :meth:`eps_embedded`) and Ren et al.'s first-token rescaling, so the shipped mitigators run.
    """

    replay_block = None  # batches are sliced to fit the device (mmh_bench.task.sampler: no padded blocks)
    terminal_time = 1.0  # the last training timestep, T - 1 = 999 (:meth:`timesteps`): Webster's sigma_max

    conditional = True
    capabilities = frozenset({"cross_attention", "condition_embedding", "attention_rescale"})
    #: Ren et al.'s mitigation: every cross-attention layer multiplies the first (start) token's
    #: logits by this factor (1 = the model as trained; see :meth:`rescaled_attention`)
    first_token_scale: float = 1.0

    def __init__(self, pipe: Any, prompts: Sequence[str] = (), *, shape: Sequence[int] | None = None,
                 output_device: str | torch.device = "cpu", rows_per_call: int | None = None,
                 attention_slice: int | None = None, jvp_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.pipe = pipe
        self.unet, self.text_encoder, self.tokenizer = pipe.unet, pipe.text_encoder, pipe.tokenizer
        for part in (self.unet, self.text_encoder):
            part.requires_grad_(False)
        self.count_module(self.unet)
        self.device = self.unet.device
        self.output_device = torch.device(output_device)
        self.jvp_dtype = jvp_dtype
        self._ab = torch.as_tensor(np.asarray(pipe.scheduler.alphas_cumprod), dtype=torch.float64)
        self.num_train_timesteps = int(self._ab.numel())
        self.prediction_type = prediction_type(pipe)
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ModelLoadError(f"unsupported prediction_type {self.prediction_type!r}")
        cfg = self.unet.config
        self.shape = tuple(int(s) for s in shape) if shape is not None else (
            int(cfg.in_channels), int(cfg.sample_size), int(cfg.sample_size))
        self.prompts = [str(p) for p in prompts]
        self._emb: dict[str, torch.Tensor] = {}
        if rows_per_call is None and os.environ.get(ENV_ROWS):
            try:
                rows_per_call = int(os.environ[ENV_ROWS])
            except ValueError:
                raise ValueError(f"${ENV_ROWS} must be a whole number of rows, got {os.environ[ENV_ROWS]!r}") from None
        if rows_per_call is not None and rows_per_call < 1:
            raise ValueError(f"rows per call must be >= 1, got {rows_per_call}")
        #: rows per network call, fixed by the user (None: chosen per kind of call, see rows_for)
        self.rows_per_call = rows_per_call
        self.attention_slice = attention_slice
        self._auto_rows: dict[str, int] = {}

    # -- memory ----------------------------------------------------------------------------------
    def _top_heads(self) -> int:
        """Heads of the widest-resolution self-attention (the largest attention maps)."""
        return max((int(m.heads) for name, m in self.unet.named_modules()
                    if name.startswith("down_blocks.0.") and name.endswith("attn1")), default=1)

    def memory_per_row(self, kind: str) -> int:
        """Estimated peak bytes one row adds to a network call: ``"forward"`` in the pipeline's
        dtype, ``"jvp"`` in ``jvp_dtype`` (primal and tangent); see :data:`FORWARD_ACTS`."""
        pixels = int(np.prod(self.shape[1:]))
        width = int(self.unet.config.block_out_channels[0])
        if kind == "jvp":
            return 2 * FORWARD_ACTS * width * pixels * torch.finfo(self.jvp_dtype).bits // 8
        return FORWARD_ACTS * width * pixels * torch.finfo(self.unet.dtype).bits // 8

    def attention_bytes(self, heads: int) -> int:
        """Estimated peak bytes of a JVP through the widest attention layer, ``heads`` at a time."""
        queries = int(np.prod(self.shape[1:]))
        return JVP_MAPS * heads * queries * queries * torch.finfo(self.jvp_dtype).bits // 8

    def _free_bytes(self) -> int | None:
        if self.device.type != "cuda":
            return None
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(free)

    def jvp_slice(self) -> int | None:
        """Heads per attention slice in a JVP: the most whose peak fits a quarter of free memory."""
        if self.attention_slice is not None:
            return int(self.attention_slice)
        free = self._free_bytes()
        if free is None:
            return None
        return max(1, min(self._top_heads(), int(0.25 * free) // max(1, self.attention_bytes(1))))

    def rows_for(self, kind: str) -> int:
        """Rows per call for ``kind`` ("forward" or "jvp"): the user's value, else as many as fit
        :data:`MEMORY_SHARE` of free device memory (at most :data:`MAX_AUTO_ROWS`; 16 on the CPU)."""
        if self.rows_per_call is not None:
            return self.rows_per_call
        if kind not in self._auto_rows:
            free = self._free_bytes()
            if free is None:
                rows = CPU_ROWS
            else:
                budget = MEMORY_SHARE * free
                if kind == "jvp":
                    budget -= self.attention_bytes(self.jvp_slice() or self._top_heads())
                    budget -= sum(p.numel() for p in self.unet.parameters()) * 2  # fp16 -> fp32 copy
                rows = int(budget // max(1, self.memory_per_row(kind)))
            self._auto_rows[kind] = max(1, min(MAX_AUTO_ROWS, rows))
        return self._auto_rows[kind]

    def _in_chunks(self, kind: str, n: int, call: Any) -> list[Any]:
        """``call(slice)`` over row slices of at most :meth:`rows_for` rows; an automatic choice
        that runs out of device memory is halved and the slice retried."""
        out, i = [], 0
        while i < n:
            rows = self.rows_for(kind)
            try:
                out.append(call(slice(i, i + rows)))
            except torch.OutOfMemoryError:
                if self.rows_per_call is not None or rows == 1:
                    raise RuntimeError(f"out of device memory at {rows} row(s) per {kind} call; set "
                                       f"${ENV_ROWS} lower or free the device") from None
                self._auto_rows[kind] = rows // 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            i += rows
        return out

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """Within the block the UNet runs in fp32 (weights upcast in place and restored after:
        fp16 -> fp32 -> fp16 is exact). For detectors whose reference computes in fp32."""
        old = self.unet.dtype
        if old == self.jvp_dtype:
            yield
            return
        self.unet.to(self.jvp_dtype)
        try:
            yield
        finally:
            self.unet.to(old)

    # -- time ------------------------------------------------------------------------------------
    def timesteps(self, t: Any) -> torch.Tensor:
        """Discrete training timestep for each ``t``: ``ceil(t T) - 1`` (tolerant to float rounding)."""
        tt = torch.as_tensor(t).double()
        k = torch.ceil(tt * self.num_train_timesteps - 1e-4).long() - 1
        return k.clamp(0, self.num_train_timesteps - 1)

    def alpha_bar(self, t: Any) -> torch.Tensor:
        dev = t.device if isinstance(t, torch.Tensor) else torch.device("cpu")
        k = self.timesteps(t.detach().cpu() if isinstance(t, torch.Tensor) else t)
        return self._ab[k].to(device=dev, dtype=torch.float32)

    # -- conditions ------------------------------------------------------------------------------
    def _text(self, c: Any) -> str:
        if c is None:
            return ""
        if isinstance(c, str):
            return c
        if isinstance(c, (int, np.integer)) or (isinstance(c, np.ndarray) and c.ndim == 0):
            i = int(c)
            if not 0 <= i < len(self.prompts):
                raise ValueError(f"prompt id {i} outside the prompt table (size {len(self.prompts)})")
            return self.prompts[i]
        raise TypeError(f"a condition is a prompt id, a prompt string or None; got {type(c).__name__}")

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> None:
        tok = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        out = self.text_encoder(tok.input_ids.to(self.text_encoder.device))[0]
        for text, emb in zip(texts, out):
            self._emb[text] = emb

    def embed(self, cond: Sequence[Any] | None, n: int) -> torch.Tensor:
        """Text-encoder states ``[n, tokens, width]`` for the conditions (empty prompt for None),
        on the model's device in the UNet's current dtype."""
        texts = [""] * n if cond is None else [self._text(c) for c in cond]
        missing = sorted(set(texts) - set(self._emb))
        if missing:
            self._encode(missing)
        return torch.stack([self._emb[t] for t in texts]).to(self.device, self.unet.dtype)

    @property
    def captions(self) -> list[str]:
        """The prompt table, under the name text-condition mitigators read (``random-tokens``)."""
        return self.prompts

    def condition_embedding(self, cond: Sequence[Any]) -> torch.Tensor:
        """The text encoder's states each prompt feeds the UNet's cross-attention, ``[n, tokens,
        width]`` in float32 on the output device: the prompt embedding Wen et al. and the MMH
        paper optimise (capability ``"condition_embedding"``)."""
        return self.embed(list(cond), len(cond)).to(self.output_device, torch.float32).clone()

    @contextlib.contextmanager
    def rescaled_attention(self, scale: float) -> Iterator[None]:
        """Within the block, every cross-attention layer multiplies the first token's logits by
        ``scale`` (Ren et al.; capability ``"attention_rescale"``), in both branches of guidance as
        on the CPU text-to-image model. JVPs (detectors only) still see the model as trained."""
        old, self.first_token_scale = self.first_token_scale, float(scale)
        try:
            with _processors(self.unet, lambda: _ExplicitCrossAttention(first_scale=scale), only_cross=True):
                yield
        finally:
            self.first_token_scale = old

    # -- network ---------------------------------------------------------------------------------
    def _eps(self, y: torch.Tensor, t: torch.Tensor, cond: Sequence[Any] | None) -> torch.Tensor:
        return self._unet(y, t, self.embed(cond, y.shape[0]))

    def _eps_embedded(self, y: torch.Tensor, t: torch.Tensor, emb: torch.Tensor,
                      cond: Sequence[Any]) -> torch.Tensor:
        return self._out(self._unet(y, t, emb))

    def _unet(self, y: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """The UNet on ``y`` with text states ``states`` (both moved to the model's device and the
        UNet's dtype; differentiable), as eps in float32."""
        y = y.to(self.device)
        states = states.to(self.device, self.unet.dtype)
        k = self.timesteps(t.detach().to(self.device))  # computed where t is: no copy back to the CPU
        out = self.unet(y.to(self.unet.dtype), k, encoder_hidden_states=states).sample.float()
        if self.prediction_type == "v_prediction":
            ab = self._ab.to(self.device, torch.float32)[k].view(-1, *([1] * len(self.shape)))
            out = ab.sqrt() * out + (1 - ab).sqrt() * y.float()
        return out

    def _rows(self, x: Any, t: Any, cond: Sequence[Any] | None) -> tuple[torch.Tensor, torch.Tensor, list | None]:
        """Inputs as CPU tensors with one time per row, conditions checked; sliced per call later."""
        y = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)
        n = y.shape[0]
        tt = torch.as_tensor(t, dtype=torch.float32).reshape(-1)
        if tt.numel() == 1:
            tt = tt.expand(n)
        if tt.shape[0] != n:
            raise ValueError(f"t has {tt.shape[0]} entries for {n} samples")
        cond = self._check_cond(cond, n)
        return y, tt, None if cond is None else list(cond)

    def _out(self, z: torch.Tensor) -> torch.Tensor:
        return z.to(self.output_device, torch.float32)

    def eps(self, x: Any, t: Any, cond: Sequence[Any] | None = None) -> torch.Tensor:
        y, tt, c = self._rows(x, t, cond)
        base = super(StableDiffusionScoreModel, self).eps
        return torch.cat(self._in_chunks("forward", y.shape[0], lambda s: self._out(
            base(y[s], tt[s], None if c is None else c[s]))))

    def eps_embedded(self, x: Any, t: Any, emb: torch.Tensor, cond: Sequence[Any]) -> torch.Tensor:
        """``eps`` with the text states ``emb`` (:meth:`condition_embedding`) in place of each
        prompt's, differentiable in ``x`` and ``emb``, in slices of rows as :meth:`eps`."""
        y, tt, c = self._rows(x, t, cond)
        if c is None or emb.shape[0] != y.shape[0]:
            raise ValueError(f"emb and cond need one row per sample ({y.shape[0]})")
        base = super().eps_embedded
        return torch.cat(self._in_chunks("forward", y.shape[0], lambda s: base(y[s], tt[s], emb[s], c[s])))

    def eps_jvp(self, x: Any, t: Any, v: Any, cond: Sequence[Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(eps, J v)`` in ``jvp_dtype`` (fp32), attention in slices of :meth:`jvp_slice` heads."""
        from diffusers.models.attention_processor import AttnProcessor, SlicedAttnProcessor

        y, tt, c = self._rows(x, t, cond)
        vv = torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v, dtype=torch.float32)
        vv = vv.reshape(-1, *self.shape)
        if c is not None:  # encode outside the forward-mode trace
            self.embed(c, len(c))
        heads = self.jvp_slice()
        # fused attention kernels have no forward-mode derivative; the plain and sliced ones do
        make = AttnProcessor if heads is None else (lambda: SlicedAttnProcessor(heads))
        base = super().eps_jvp

        def call(s: slice) -> tuple[torch.Tensor, torch.Tensor]:
            out, jv = base(y[s], tt[s], vv[s], None if c is None else c[s])
            return self._out(out), self._out(jv)

        with self.full_precision(), _processors(self.unet, make, only_cross=False):
            parts = self._in_chunks("jvp", y.shape[0], call)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def score(self, x: Any, t: Any, cond: Sequence[Any] | None = None) -> torch.Tensor:
        e = self.eps(x, t, cond)
        tt = torch.as_tensor(t, dtype=torch.float32).reshape(-1).cpu()
        return -e / self.sigma(tt).reshape(-1, *([1] * len(self.shape))).to(self.output_device)

    @property
    def cross_attention_layers(self) -> int:
        return sum(name.endswith("attn2.processor") for name in self.unet.attn_processors)

    @torch.no_grad()
    def cross_attention(self, x: Any, t: Any, cond: Sequence[Any], layer: int | None = None) -> torch.Tensor:
        """Softmax cross-attention over the prompt's tokens ``[n, tokens]`` (each row sums to 1),
        averaged over heads and image positions, and over every cross-attention layer
        (``layer=None``) or read at one: ``layer`` counts cross-attention layers in the order the
        UNet runs them (SD: 0-5 down, 6 mid, 7-15 up). One evaluation per row."""
        if cond is None:
            raise ValueError("cross_attention needs the prompts (cond)")
        y0, tt0, c0 = self._rows(x, t, cond)

        def call(s: slice) -> torch.Tensor:
            y, tt = self._prepare(y0[s], tt0[s])  # on the model's device, validated
            c = c0[s]
            self.embed(c, y.shape[0])
            self.nfe += y.shape[0]
            store: list[torch.Tensor] = []
            with _processors(self.unet, lambda: _ExplicitCrossAttention(store, self.first_token_scale),
                             only_cross=True):
                self._eps(y, tt, c)
            if not store:
                raise RuntimeError("the UNet has no cross-attention layers")
            if layer is None:
                return self._out(torch.stack(store).mean(0))
            if not -len(store) <= int(layer) < len(store):
                raise ValueError(f"cross-attention layer {layer} does not exist; this UNet has {len(store)} "
                                 f"(0-{len(store) - 1})")
            return self._out(store[int(layer)])

        return torch.cat(self._in_chunks("forward", y0.shape[0], call))


# -- generation ----------------------------------------------------------------------------------
def make_scheduler(pipe: Any, name: str) -> Any:
    """A scheduler of class ``<name>Scheduler`` from the pipeline's config (same betas), or the
    pipeline's own for ``"default"``."""
    if name == "default":
        return pipe.scheduler
    import diffusers

    cls = getattr(diffusers, f"{name}Scheduler", None)
    if cls is None:
        raise ValueError(f"unknown scheduler {name!r} (expected e.g. DDIM, PNDM, EulerDiscrete)")
    return cls.from_config(pipe.scheduler.config)


def latent_shape(pipe: Any, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
    f = int(pipe.vae_scale_factor)
    size = int(pipe.unet.config.sample_size) * f
    return (int(pipe.unet.config.in_channels), (height or size) // f, (width or size) // f)


def initial_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """The starting latent of one generation, drawn on the CPU so it is the same on any hardware."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen)


def generate_latents(pipe: Any, prompts: Sequence[str], *, generations: int = 1, steps: int = 50,
                     guidance_scale: float = 7.5, scheduler: str = "DDIM", seed: int = 0,
                     height: int | None = None, width: int | None = None, batch_size: int = GEN_BATCH,
                     progress: bool = False, shared_noise: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``generations`` final latents per prompt (prompt-major order), float32 ``[n, 4, h, w]``, and
    the initial latent x_T of each.

    Generation ``j`` of prompt ``i`` starts from :func:`initial_noise` with seed
    ``seed * 1_000_000 + i * generations + j``; with ``shared_noise`` from seed
    ``seed * 1_000_000 + j`` for every prompt (Jeon et al.'s protocol, which seeds the generator
    with 42 before every prompt, so all prompts share their x_T and differ only in the prompt).
    """
    from tqdm.auto import tqdm

    shape = latent_shape(pipe, height, width)
    f = int(pipe.vae_scale_factor)
    jobs = [(i, j) for i in range(len(prompts)) for j in range(generations)]
    saved = pipe.scheduler
    pipe.scheduler = make_scheduler(pipe, scheduler)
    out, starts = [], []
    try:
        for start in tqdm(range(0, len(jobs), batch_size), desc="generating latents", disable=not progress,
                          unit="batch"):
            chunk = jobs[start:start + batch_size]
            init = torch.stack([initial_noise(shape, seed * 1_000_000 + (0 if shared_noise else i * generations) + j)
                                for i, j in chunk])
            with torch.no_grad():
                res = pipe(prompt=[prompts[i] for i, _ in chunk], num_inference_steps=int(steps),
                           guidance_scale=float(guidance_scale), height=shape[1] * f, width=shape[2] * f,
                           latents=init.to(pipe.unet.device, pipe.unet.dtype), output_type="latent")
            out.append(res.images.float().cpu().numpy())
            starts.append(init.numpy())
    finally:
        pipe.scheduler = saved
    if not out:
        return np.zeros((0, *shape), np.float32), np.zeros((0, *shape), np.float32)
    return np.concatenate(out, axis=0).astype(np.float32), np.concatenate(starts, axis=0).astype(np.float32)


def ddim_sampler(pipe: Any, scheduler: str, steps: int, guidance_scale: float) -> "Sampler | None":
    """The replay of the task's generations (:class:`mmh_bench.task.sampler.Sampler`): DDIM on the
    scheduler's own timesteps as times ``(timestep + 1) / T`` (981 ... 1 for 50 steps: t = 0.982
    ... 0.002, which :meth:`StableDiffusionScoreModel.timesteps` maps back), ending where the
    pipeline's last step ends (``final_alpha_bar``). None when the task's
    scheduler is not DDIM on a uniform grid: its generations then cannot be replayed."""
    from mmh_bench.task.sampler import Sampler
    sched = make_scheduler(pipe, scheduler)
    if type(sched).__name__ != "DDIMScheduler" or float(sched.config.get("eta", 0.0) or 0.0) != 0.0:
        return None
    sched.set_timesteps(int(steps))
    ts = np.asarray(sched.timesteps.cpu().numpy(), dtype=np.int64)
    big_t = int(sched.config.num_train_timesteps)
    if len(ts) < 2 or len(set(np.diff(ts).tolist())) != 1:
        return None
    prev = int(ts[-1]) - big_t // int(steps)  # where the pipeline's last step lands (as DDIMScheduler.step)
    final = float(sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod)
    return Sampler(steps=len(ts), guidance=float(guidance_scale), t_max=(ts[0] + 1) / big_t,
                   t_min=(ts[-1] + 1) / big_t, final_alpha_bar=final if final < 1 else None)


# -- loading a built task's model ----------------------------------------------------------------
def load_for_build(root: str | Path, *, source: str | None = None, device: str | torch.device | None = None,
                   dtype: torch.dtype | str | None = None) -> StableDiffusionScoreModel:
    """The adapter for a built task folder: its prompt table, its latent shape, and weights whose
    fingerprint matches the ones that generated the samples."""
    root = Path(root)
    meta = json.loads((root / "meta.json").read_text())
    mcfg = meta["model"]
    src = source or (_SOURCE_OVERRIDE[-1] if _SOURCE_OVERRIDE else mcfg["source"])
    pipe = load_pipeline(src, device=device, dtype=dtype)
    check_generation(pipe, mcfg.get("generation"), str(src))
    fp = fingerprint(pipe)
    if mcfg.get("fingerprint") and fp != mcfg["fingerprint"]:
        raise ModelLoadError(
            f"task {meta.get('task')!r} was generated by weights with fingerprint {mcfg['fingerprint']} "
            f"({mcfg['source']}); {src} has {fp}. Use the same weights, or rebuild the task with "
            f"`mmh-bench build {meta.get('task')} --force --model {src}`")
    with np.load(root / "instance.npz", allow_pickle=False) as z:
        prompts = [str(p) for p in z["prompts"]]
    return StableDiffusionScoreModel(pipe, prompts, shape=mcfg["latent_shape"])


def load_for_instance(inst: Any, source: str | None = None) -> StableDiffusionScoreModel:
    """``evaluate(model_override=...)`` hook: the adapter for a built Stable Diffusion task."""
    if inst.root is None:
        raise ModelLoadError(f"task {inst.spec.name!r} has no build folder")
    return load_for_build(inst.root, source=source)

