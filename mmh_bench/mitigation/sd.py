"""Stable Diffusion tasks on the mitigation track: the task's own generations, scored as MemBench does.

SD tasks are labelled per prompt (the literature's memorized prompts) and keep no training set, so
no copy rule can label a regenerated latent. What a mitigator must stop on SD is the reproduction
of its prompt's training images, so :class:`MemBenchJudge` scores that directly: the generations
of the task's memorized prompts that have ground-truth images (the first ``n`` of them; rows are
in a seeded random order, so a prefix is a uniform subset) are regenerated from their stored x_T
through the task's replayed DDIM sampler, decoded by the pipeline's VAE and compared by SSCD with
their prompt's ground truth (:mod:`mmh_bench.mitigation.membench`). ``memorization`` is the share
above MemBench's 0.5 (split into VM and TM by the prompts' NeMo labels), so the board's rate
column means "copy rate" on these tasks; the CLIP score is the quality axis.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mmh_bench.retrieval.embed import Embedder
from mmh_bench.task.instance import SUBTYPE_CODE, TaskInstance
from mmh_bench.task.subtypes import PROMPT_SUBTYPES
from .ground_truth import GroundTruth, GroundTruthError, load_ground_truth, read_image
from .membench import DECODE_BATCH, ClipScorer, clip_scores, copies, decode_latents, load_clip, load_sscd, max_sscd

#: the family whose tasks this judge scores
SD_FAMILY = "stable-diffusion"
#: arrays of an SD build with one row per generation (the SD builder's sample arrays and the labels)
ROW_ARRAYS = ("samples", "cond", "labels", "subtype", "noise", "generation", "negative_source")
#: a regenerated latent within this of the stored one counts as unchanged: the replay runs the two
#: guidance branches in separate calls where the pipeline batched them (float rounding only)
UNCHANGED_ATOL = 1e-3


class MemBenchJudge:
    """Scores mitigation on Stable Diffusion tasks against the ground-truth images of their
    memorized prompts. ``sscd`` maps a list of images to L2-normalised rows
    (:func:`~mmh_bench.mitigation.membench.load_sscd`). ``partial``: score the memorized prompts
    that have ground truth and count the others, instead of refusing."""

    def __init__(self, ground_truth: GroundTruth, sscd: Embedder, clip: ClipScorer, *, partial: bool = False,
                 batch_size: int = DECODE_BATCH) -> None:
        self.ground_truth, self.sscd, self.clip = ground_truth, sscd, clip
        self.partial, self.batch_size = partial, int(batch_size)
        self._gt: dict[str, np.ndarray] = {}  # prompt -> SSCD rows of its ground-truth images
        self._scored: dict[tuple[str, int | None], TaskInstance] = {}
        self._left_out: dict[str, int] = {}  # data hash -> memorized prompts without ground truth
        self._unmitigated: dict[tuple[str, int], dict[str, Any]] = {}

    @classmethod
    def from_files(cls, ground_truth: str, sscd: str, sscd_sha256: str, clip: str, clip_revision: str | None = None,
                   *, partial: bool = False) -> "MemBenchJudge":
        """The judge from the user's files: the ground-truth folder, SSCD's TorchScript file and its
        sha256, CLIP's folder or hub id (and revision)."""
        return cls(load_ground_truth(ground_truth), load_sscd(sscd, sscd_sha256), load_clip(clip, clip_revision),
                   partial=partial)

    def applies(self, inst: TaskInstance) -> bool:
        return inst.spec.family == SD_FAMILY

    def identity(self) -> dict[str, str]:
        """What a result's MemBench scores depend on besides the generations."""
        return {"sscd_model": self.sscd.name, "clip_model": self.clip.name,
                "ground_truth_sha256": self.ground_truth.sha256}

    # -- the rows scored ---------------------------------------------------------------------------
    def scored(self, inst: TaskInstance, n: int | None = None) -> TaskInstance:
        """The generations scored, as an instance of their own (same model, identity and sampler):
        the first ``n`` rows of the memorized prompts that have ground truth. Checks the ground
        truth covers them and embeds its images, so a bad folder fails before any mitigator runs."""
        key = (inst.data_hash, n)
        if key not in self._scored:
            text = np.char.strip(np.asarray(inst.arrays["prompts"])[np.asarray(inst.cond)].astype(str))
            memorized = inst.labels.astype(bool)
            names = sorted(set(text[memorized].tolist()))
            covered = self.ground_truth.covering(names, partial=self.partial)
            keep = np.flatnonzero(memorized & np.isin(text, covered))[:n]
            if not len(keep):
                raise GroundTruthError(f"task {inst.spec.name!r} has no generation of a memorized prompt to score")
            for prompt in sorted(set(text[keep].tolist())):
                self._ground_truth_rows(prompt)
            self._left_out[inst.data_hash] = len(names) - len(covered)
            self._scored[key] = _select_rows(inst, keep)
        return self._scored[key]

    def _ground_truth_rows(self, prompt: str) -> np.ndarray:
        if prompt not in self._gt:
            self._gt[prompt] = self.sscd([read_image(p) for p in self.ground_truth.images[prompt]])
        return self._gt[prompt]

    # -- scores ------------------------------------------------------------------------------------
    def metrics(self, scored: TaskInstance, latents: np.ndarray) -> dict[str, Any]:
        """The mitigation metrics of ``latents``, the regenerations of ``scored``'s rows: copy rate
        (overall, VM, TM), share unchanged, and MemBench's scores."""
        from .evaluate import rate_with_ci
        prompts, ids = np.asarray(scored.arrays["prompts"]), np.asarray(scored.cond).astype(int)
        gen_sscd, gen_clip = [], []
        for images in decode_latents(scored.score_model().pipe, latents, self.batch_size):
            gen_sscd.append(self.sscd(images))
            gen_clip.append(self.clip.image_features(images))
        uniq = np.unique(ids)
        gt = [self._ground_truth_rows(str(prompts[i]).strip()) for i in uniq]
        sim = max_sscd(np.concatenate(gen_sscd), np.concatenate(gt), np.repeat(uniq, [len(g) for g in gt]), ids)
        text = self.clip.text_features([str(prompts[i]) for i in uniq])[np.searchsorted(uniq, ids)]
        clip = clip_scores(np.concatenate(gen_clip), text)
        copied = copies(sim)
        n = len(latents)
        unchanged = np.all(np.isclose(latents.reshape(n, -1), scored.samples.reshape(n, -1), rtol=0,
                                      atol=UNCHANGED_ATOL), axis=1)
        membench = {"n_prompts": int(len(uniq)), "sscd_max_mean": round(float(sim.mean()), 6),
                    "sscd_prompt_max_mean": round(float(np.mean([sim[ids == i].max() for i in uniq])), 6),
                    "sscd_above_share": round(float(copied.mean()), 6), "clip_score": round(float(clip.mean()), 6),
                    **self.identity(), "n_prompts_without_ground_truth": self._left_out.get(scored.data_hash, 0)}
        return {"memorization": rate_with_ci(copied),
                "per_subtype": {name: rate_with_ci(copied & (scored.subtype == SUBTYPE_CODE[name]))
                                for name in PROMPT_SUBTYPES},
                "unchanged_share": round(float(unchanged.mean()), 6), "membench": membench}

    def unmitigated(self, scored: TaskInstance) -> dict[str, Any]:
        """The copy rate and MemBench's scores of the task's own generations of ``scored``'s rows."""
        key = (scored.data_hash, len(scored.samples))
        if key not in self._unmitigated:
            m = self.metrics(scored, scored.samples)
            self._unmitigated[key] = {"memorization": m["memorization"], "membench": m["membench"]}
        return self._unmitigated[key]


def _select_rows(inst: TaskInstance, rows: np.ndarray) -> TaskInstance:
    """``inst`` restricted to ``rows`` (per-generation arrays sliced, the rest shared), with its
    loaded model and a sampler that ends where the pipeline ended (builds made before the replay
    recorded ``final_alpha_bar`` get it from the pipeline's scheduler)."""
    from mmh_bench.task.models.stable_diffusion import ddim_sampler
    model = inst.score_model()
    arrays = {k: (v[rows] if k in ROW_ARRAYS else v) for k, v in inst.arrays.items()}
    meta = dict(inst.meta)
    if meta.get("sampler") and "final_alpha_bar" not in meta["sampler"]:
        s = meta["sampling"]
        replay = ddim_sampler(model.pipe, s["scheduler"], s["steps"], s["guidance_scale"])
        if replay is not None and replay.final_alpha_bar is not None:
            meta["sampler"] = {**meta["sampler"], "final_alpha_bar": replay.final_alpha_bar}
    out = dataclasses.replace(inst, arrays=arrays, meta=meta)
    out.set_model(model)
    return out
