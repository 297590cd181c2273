"""Synthetic manifold mixtures: data with known LID*, an MLP diffusion model, its samples."""
from __future__ import annotations

from pathlib import Path

import torch

from ..build import BuildOutput, register_builder
from ..data.synthetic import make_mixture
from ..models.mlp import MLPScoreModel, sample_ddpm, train_denoiser
from ..spec import TaskSpec


@register_builder("synthetic")
def build_synthetic(spec: TaskSpec, work: Path, progress: bool) -> BuildOutput:
    mix = make_mixture(spec.section("data"), spec.seed)
    m = spec.section("model")
    torch.manual_seed(spec.seed)
    net = train_denoiser(mix.x, hidden=int(m.get("hidden", 256)), depth=int(m.get("depth", 4)),
                         steps=int(m.get("steps", 20000)), batch_size=int(m.get("batch_size", 256)),
                         lr=float(m.get("lr", 1e-3)), seed=spec.seed, progress=progress,
                         desc=f"{spec.name}: training")
    net.save(work / "model")
    s = spec.section("sampling")
    samples = sample_ddpm(MLPScoreModel(net), int(s.get("n", 2000)), steps=int(s.get("steps", 1000)),
                          seed=spec.seed + 1, progress=progress)
    return BuildOutput(samples=samples, train=mix.x, train_lid=mix.lid,
                       model={"kind": "mlp", "path": "model"},
                       extra_arrays={"train_component": mix.component})
