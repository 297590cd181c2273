"""The mini text-to-image task (family "text-to-image"): captioned packaged images, captions
encoded by a real sentence model, a cross-attention diffusion model trained on CPU, samples from
memorized, control and novel prompts labelled in pixel space by the shared copy test.

Spec tables:

- ``[data]``: image source and injection keys as for the image family
  (:func:`mmh_bench.task.data.images.inject`, templates ``tm_*`` included), plus ``unique_singles``,
  ``novel_prompts``, ``attribute_captions``, ``composed_prompts``
  (:func:`mmh_bench.task.data.captions.caption_set`) and ``max_tokens`` (caption length in word pieces).
- ``[model]``: ``arch`` ("mlp", default: :class:`~mmh_bench.task.models.cross_attn.CrossAttnDenoiser`
  with ``hidden``, ``depth``, ``queries``, ``heads``, ``text_width``; "unet": Stable Diffusion's
  ``UNet2DConditionModel``, :class:`~mmh_bench.task.models.unet_cond.UNetCondDenoiser`, with
  ``channels``, ``layers``, ``head_dim``, ``groups``, ``cross_blocks``), ``steps``, ``batch_size``, ``lr``,
  ``p_uncond`` (caption dropout), ``t_power``.
- ``[sampling]``: ``steps``, ``guidance`` (classifier-free), ``per_unique`` and ``per_generic``
  generations per prompt (:func:`mmh_bench.task.data.captions.prompt_plan`).

Where the task places templates, a copy of a duplicated image is named VM (verbatim) and a copy
of a template TM, as on the Stable Diffusion tasks; otherwise DD. Per sample, ``cond`` holds the
caption id; the build keeps every caption's text
(``caption_text``, fixed-width unicode), kind and class, and the model folder keeps the token
embeddings, so no text encoder is needed to evaluate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmh_bench.task.build import BuildError, BuildOutput, training_options
from mmh_bench.task.data.captions import KIND, caption_set, prompt_plan
from mmh_bench.task.data.images import CLASS_NAMES, UNKNOWN_POSITIVE_LID, heldout_images, inject, load_images
from mmh_bench.task.data.text import ENCODER_PACKAGE, TextEncoder
from mmh_bench.task.models.cross_attn import CaptionTable, CrossAttnScoreModel, save_cross_attn, train_cross_attn
from mmh_bench.task.sampler import Sampler, sample_task
from mmh_bench.task.spec import TaskSpec
from .image import null_halves, place_rare_class


def build_text_to_image(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    if not spec.conditional:
        raise BuildError(f"task {spec.name!r}: text-to-image tasks are conditional; set [model] conditional = true")
    d, m, s = spec.model.data, spec.model.model, spec.model.sampling
    source = d.source
    x, y = load_images(source, d.side)
    d = place_rare_class(spec, d, y)
    inj = inject(x, y, d, spec.seed)
    cs = caption_set(inj, CLASS_NAMES[source], d, spec.seed)
    encoder = TextEncoder(max_tokens=d.max_tokens)
    tokens, mask = encoder.encode(cs.captions)
    n_tokens = encoder.n_tokens(cs.captions)
    table = CaptionTable(torch.as_tensor(tokens), torch.as_tensor(mask), cs.null_id)
    # the spec model refuses UNet keys under arch = "mlp" and MLP keys under arch = "unet"
    net = train_cross_attn(inj.x, cs.train_caption, table, queries=m.queries, heads=m.heads,
                           text_width=m.text_width, arch=m.arch, unet=m.unet(), **training_options(spec, progress))
    save_cross_attn(net, table, cs.captions, work / "model")
    model = CrossAttnScoreModel(net, table, cs.captions)
    cond = prompt_plan(cs, s.per_unique, s.per_generic)
    sampler = Sampler.from_spec(s, clip=1.0)
    samples, noise = sample_task(model, len(cond), spec.seed, sampler, np.asarray(cond).tolist(),
                                 progress=progress)
    width = max(len(c) for c in cs.captions)
    memorized = [i for i, k in enumerate(cs.kind.tolist()) if k in (KIND["duplicated"], KIND["template"])]
    heldout = heldout_images(x, y, inj, d, spec.seed)
    return BuildOutput(
        heldout=heldout, **null_halves(heldout), train_source=cs.kind[cs.train_caption].astype(np.int64),
        source_names=[f"{k} caption" for k in KIND],
        dd_subtype_of_source=({KIND["duplicated"]: "VM", KIND["template"]: "TM"} if d.tm_n else {}),
        samples=samples, train=inj.x, train_lid=inj.lid, cond=cond, train_cond=cs.train_caption,
        model={"kind": "cross-attn", "path": "model"}, sample_arrays={"noise": noise},
        extra_arrays={"caption_text": np.asarray(cs.captions, dtype=f"<U{width}"),
                      "caption_kind": cs.kind, "caption_class": cs.caption_class,
                      "caption_n_tokens": n_tokens.astype(np.int64),
                      "train_class": inj.label, "train_group": inj.group, "train_dup_id": inj.dup_id,
                      "train_source_row": inj.source_row,
                      **({"train_template_id": inj.template_id} if d.tm_n else {})},
        extra_meta={"image_source": source, "image_shape": list(inj.x.shape[1:]), "sampler": sampler.to_meta(),
                    "text_encoder": f"{ENCODER_PACKAGE} (all-MiniLM-L6-v2 token embeddings, "
                                    f"{tokens.shape[-1]}-dim, {tokens.shape[1]} tokens)",
                    "caption_kinds": dict(KIND), "null_caption_id": cs.null_id,
                    "memorized_prompt_ids": memorized,
                    "train_lid_note": (f"LID* is 0 for duplicated images; {UNKNOWN_POSITIVE_LID} marks "
                                       "'unknown, > 0' for all others")})
