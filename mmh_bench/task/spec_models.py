"""Closed, typed models of every section of a task spec, one set per builder, with their defaults.

Why: a typo such as ``[sampling] stpes = 5`` used to pass silently, change the spec hash and leave
the builder on its default. Every key a builder (and the data module it calls) reads is declared
here with its type, range and default; any other key, section or kind is refused with a message
that names the section and the key. Builders read the validated models (``spec.model.sampling.n``),
so each default is written once, here; a default of None means the builder computes it (the
description says how). The spec's hash is of the document as written, defaults never filled in.

Each family's record (mmh_bench.task.families) names its task model; ``python -m
mmh_bench.task.spec_reference`` prints docs/TASK_SPEC.md, the reference generated from them.

Longer than ~400 lines: it is a declaration, one model per section per builder; the generated
reference (docs/TASK_SPEC.md) reads them in order.
"""
from __future__ import annotations

import difflib
import math
import typing
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from mmh_bench.task.data.images import SOURCES as _IMAGE_SOURCES
from mmh_bench.task.subtypes import CONSTRUCTED_SUBTYPES, PROMPT_SUBTYPES

ImageSource = Literal[tuple(sorted(_IMAGE_SOURCES))]  # type: ignore[valid-type]
Pair = Annotated[list[float], Field(min_length=2, max_length=2)]


def did_you_mean(word: str, choices: Any, fmt: str = "'{}'") -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, else an empty string."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {fmt.format(close[0])}?)" if close else ""


def rule(message: str, *at_key: str | int) -> PydanticCustomError:
    """A cross-key problem, reported at ``at_key`` (relative to the table that raises it)."""
    return PydanticCustomError("spec_rule", "{message}", {"message": message, "at": list(at_key)})


def opt(default: Any, description: str, **constraints: Any) -> Any:
    """An optional key and its default, the one place the default is written (None: the builder
    computes it, as ``description`` says)."""
    return Field(default, description=description, **constraints)


class Closed(BaseModel):
    """A TOML table whose keys are exactly the declared fields, of exactly the declared types."""

    model_config = ConfigDict(extra="forbid", strict=True)
    #: heading of the table in docs/TASK_SPEC.md
    title: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unknown = [k for k in data if k not in cls.model_fields]
        if unknown:  # the likeliest typo first, then the rest
            unknown.sort(key=lambda k: not did_you_mean(k, cls.model_fields))
            also = f"; also unknown: {', '.join(map(repr, unknown[1:]))}" if unknown[1:] else ""
            raise PydanticCustomError("unknown_key", "{message}",
                                      {"message": cls.unknown(unknown[0], data[unknown[0]]) + also, "at": []})
        for key, value in data.items():
            if value is None:
                raise rule("must not be null", key)
        return data

    @classmethod
    def unknown(cls, key: str, value: Any) -> str:
        return f"unknown key {key!r}{did_you_mean(key, cls.model_fields)}"


# -- top-level tables shared by every builder ---------------------------------------------------
class Placement(Closed):
    title = "[placement]: how a test instance is placed (read by synthetic builds)"
    scale: Pair = opt([1.0, 1.0], "[lo, hi], 0 < lo <= hi: the data set's log-uniform random scale")
    shift: float = opt(0.0, "preferred length of the random shift, in units of the data's RMS radius; the length "
                            "used is the nearest at which the origin ranks copies at chance", ge=0)
    point_jitter: float = opt(0.0, "largest random move of each point component's location", ge=0)
    class_permutation: bool | None = opt(None, "shuffle which class or caption names which memorized condition")

    @model_validator(mode="after")
    def _order(self) -> Placement:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise rule(f"must be [lo, hi] with 0 < lo <= hi, got {self.scale}", "scale")
        return self


class Instances(Closed):
    title = "[instances]: which instances of the task exist"
    dev_seeds: list[Annotated[int, Field(ge=0)]] | None = opt(None, "seeds of the dev instances (absent: the "
                                                                    "spec's seed)")
    test_replicates: int = opt(1, "test instances the board keeps, each placed and trained from its own "
                                  "secret-derived seed; the board shows their mean and spread", ge=1, le=20)


class CopyLabels(Closed):
    title = "[labels]: the copy test that labels generated samples"
    ratio: float = opt(1 / 3, "nearest-neighbour ratio d1/d2 under which a sample copies", gt=0, le=1)
    abs_tol: float = Field(description="required: distance d1 under which a copy counts", gt=0)
    dedup_tol: float = opt(0.0, "training rows closer than this are one point (0: bit-identical)", ge=0)
    chance_alpha: float = opt(1e-3, "level of the test that chance does not explain a point's copies", gt=0, lt=1)
    null_draws: int = opt(20_000, "fresh draws behind the chance test and null copy rate, at least (synthetic "
                                  "tasks draw 20 per generated sample if that is more)", ge=100)


class Balance(Closed):
    title = "[balance]: the label balance a build must reach (else it fails)"
    min_memorized: float = opt(0.01, "least memorized fraction", ge=0, le=1)
    max_memorized: float = opt(0.99, "largest memorized fraction", ge=0, le=1)
    require_subtypes: list[Literal[CONSTRUCTED_SUBTYPES]] = opt(  # type: ignore[valid-type]
        [], "subtypes that must each have min_per_subtype samples")
    min_per_subtype: int = opt(1, "samples each required subtype needs", ge=1)

    @model_validator(mode="after")
    def _order(self) -> Balance:
        if {"min_memorized", "max_memorized"} <= self.model_fields_set and self.min_memorized > self.max_memorized:
            raise rule(f"must be >= min_memorized ({self.min_memorized}), got {self.max_memorized}", "max_memorized")
        return self


class PromptBalance(Balance):
    title = "[balance] of Stable Diffusion tasks (labels per prompt)"
    require_subtypes: list[Literal[PROMPT_SUBTYPES]] = opt(  # type: ignore[valid-type]
        [], "subtypes that must each have min_per_subtype samples")


# -- models ------------------------------------------------------------------------------------
class Training(Closed):
    """The training recipe every shipped denoiser reads (mmh_bench.task.build.training_options);
    the defaults are the mixtures' recipe, image models declare their own."""

    hidden: int = opt(256, "width", ge=1)
    depth: int = opt(4, "residual blocks", ge=1)
    steps: int = opt(20000, "training steps", ge=1)
    batch_size: int = opt(256, "training batch", ge=1)
    lr: float = opt(1e-3, "Adam learning rate", gt=0)


class MLPModel(Training):
    title = "[model] of synthetic tasks: the MLP denoiser"
    conditional: bool = opt(False, "train on condition ids with condition dropout")
    p_uncond: float = opt(0.1, "condition dropout, conditional models only", ge=0, le=1)


class PixelMLPModel(MLPModel):
    title = "[model] of image tasks: the pixel-space MLP denoiser"
    hidden: int = opt(384, "width", ge=1)
    depth: int = opt(3, "residual blocks", ge=1)
    steps: int = opt(6000, "training steps", ge=1)
    batch_size: int = opt(64, "training batch", ge=1)
    lr: float = opt(2e-3, "Adam learning rate", gt=0)
    t_power: float = opt(1.0, "training times T_MIN + u^t_power: > 1 favours low noise", gt=0)


#: the [model] keys only the UNet reads
UNET_KEYS = ("channels", "layers", "head_dim", "groups", "cross_blocks")


class CrossAttnModel(PixelMLPModel):
    title = "[model] of text-to-image tasks: the cross-attention denoiser"
    conditional: Literal[True] = Field(description="required: captions condition every sample")
    arch: Literal["mlp", "unet"] = opt(
        "mlp", "'mlp': an MLP whose hidden state cross-attends to the caption tokens after every block; "
        "'unet': Stable Diffusion's UNet2DConditionModel (cross-attention in the first down, mid and last up block)")
    queries: int = opt(4, "mlp: attention queries per block; hidden must divide by queries*heads", ge=1)
    heads: int = opt(4, "mlp: attention heads", ge=1)
    text_width: int = opt(64, "mlp: width of the projected caption tokens", ge=1)
    channels: list[Annotated[int, Field(ge=1)]] = opt(
        [32, 64], "unet: block widths, one down and one up block each; multiples of groups", min_length=2)
    layers: int = opt(1, "unet: layers per block (1: 4 cross-attention layers with two blocks)", ge=1)
    head_dim: int = opt(8, "unet: width of one attention head", ge=1)
    groups: int = opt(8, "unet: group-norm groups", ge=1)
    cross_blocks: list[Annotated[int, Field(ge=0)]] = opt(
        [0], "unet: down blocks (0-based, finest first) with cross-attention, mirrored in the up blocks; the mid "
        "block always has it", min_length=1)

    @model_validator(mode="after")
    def _arch_keys(self) -> CrossAttnModel:
        unet = [k for k in UNET_KEYS if k in self.model_fields_set]
        if unet and self.arch != "unet":
            raise rule('applies to arch = "unet" only', unet[0])
        mlp = [k for k in ("hidden", "depth", "queries", "heads", "text_width") if k in self.model_fields_set]
        if mlp and self.arch == "unet":
            raise rule('applies to the MLP only (arch = "mlp"); the UNet reads ' + ", ".join(UNET_KEYS), mlp[0])
        if any(b >= len(self.channels) for b in self.cross_blocks):
            raise rule(f"must name blocks of channels (0-{len(self.channels) - 1})", "cross_blocks")
        return self

    def unet(self) -> dict[str, Any]:
        """The UNet's keyword arguments (none for the MLP)."""
        return {k: getattr(self, k) for k in UNET_KEYS} if self.arch == "unet" else {}


class LIDModel(Training):
    title = "[model] of LID mixture tasks: an unconditional MLP denoiser (omit for no model)"
    train: bool | None = opt(None, "train a model (absent: true when steps is given)")
    conditional: Literal[False] = opt(False, "LID tasks are unconditional")

    @model_validator(mode="after")
    def _trained(self) -> LIDModel:
        given = [k for k in ("hidden", "depth", "batch_size", "lr") if k in self.model_fields_set]
        if given and not self.trained:
            raise rule("is only read when a model is trained (give steps, or train = true)", given[0])
        return self

    @property
    def trained(self) -> bool:
        """Whether the task trains a model: ``train``, else whether ``steps`` is given."""
        return self.train if self.train is not None else "steps" in self.model_fields_set


class SDModel(Closed):
    title = "[model] of Stable Diffusion tasks"
    id: str | None = opt(None, "Hugging Face hub id or local folder of the pipeline (--model overrides)",
                         min_length=1)
    conditional: Literal[True] = Field(description="required: prompts condition every sample")
    generation: Literal["sd1", "sd2", "sd2-base"] | None = opt(
        None, "the Stable Diffusion generation the task needs; weights of another are refused (absent: any)")


# -- sampling ----------------------------------------------------------------------------------
class Sampling(Closed):
    title = "[sampling] of synthetic and image tasks: DDIM from stored initial noise"
    sampler: Literal["ddim"] = opt("ddim", "the sampler (mmh_bench.task.sampler); only 'ddim': deterministic, "
                                           "replayable")
    n: int = opt(2000, "samples to generate", ge=1)
    steps: int = opt(100, "DDIM steps", ge=2)
    guidance: float = opt(1.0, "classifier-free guidance scale, conditional models only", ge=0)
    clip_factor: float | None = opt(None, "synthetic tasks: clamp each step's x0 prediction to this many times the "
                                          "training data's largest coordinate (absent: no clamp)", gt=0)


class PromptSampling(Closed):
    title = "[sampling] of text-to-image tasks: generations per prompt"
    sampler: Literal["ddim"] = opt("ddim", "the sampler (mmh_bench.task.sampler); only 'ddim': deterministic, "
                                           "replayable")
    steps: int = opt(100, "DDIM steps", ge=2)
    guidance: float = opt(3.0, "classifier-free guidance scale", ge=0)
    per_unique: int = opt(8, "generations per duplicated, template, rare, single and novel caption", ge=1)
    per_generic: int = opt(10, "generations per generic and composed caption", ge=1)


class SDSampling(Closed):
    title = "[sampling] of Stable Diffusion tasks"
    generations_per_prompt: int = opt(1, "latents per prompt", ge=1)
    steps: int = opt(50, "scheduler steps", ge=1)
    guidance_scale: float = opt(7.5, "classifier-free guidance scale", ge=0)
    scheduler: str = opt("DDIM", "diffusers scheduler class without 'Scheduler'", pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    height: int | None = opt(None, "image height in pixels (absent: the model's)", ge=8, multiple_of=8)
    width: int | None = opt(None, "image width in pixels (absent: the model's)", ge=8, multiple_of=8)
    initial_noise: Literal["per-generation", "shared"] = opt(
        "per-generation", "x_T of each generation: 'per-generation' (its own draw) or 'shared' (generation j of "
        "every prompt starts from the same x_T, as Jeon et al.'s set_seed(42) before every prompt)")


# -- synthetic mixtures (mmh_bench/task/data/synthetic.py) ---------------------------------------------
class Component(Closed):
    """Keys every component kind reads; subclasses add their own."""

    role: str | None = opt(None, "the component's designed role, named in the composition audit (absent: "
                                 "kind #index)", min_length=1)
    n: int = opt(1, "points drawn", ge=1)
    copies: int = opt(1, "duplicates of each point; > 1 makes each a DD-Mem source", ge=1)
    rotate: bool | None = opt(None, "random rotation (absent: [data] rotate)")
    offset: list[float] | None = opt(None, "shift vector, at most dim long (zero-padded)", min_length=1)
    offset_norm: float | None = opt(None, "length of a shift in a random direction", ge=0)
    #: key -> (switch, values of the switch under which the key is read)
    only_when: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {}

    @model_validator(mode="after")
    def _read(self) -> Component:
        if self.offset is not None and self.offset_norm is not None:
            raise rule("cannot be given with offset (give one of them)", "offset_norm")
        for key, (switch, values) in self.only_when.items():
            if key not in self.model_fields_set:
                continue
            value = getattr(self, switch)
            if value not in values:
                raise rule(f"is only read when {switch} = {' or '.join(map(repr, values))} "
                           f"({switch} is {value!r})", key)
        return self


def _kind(name: str) -> Any:
    return Field(description=f"{name!r}")


class PointComponent(Component):
    title = "kind = 'point': one location (LID* 0)"
    kind: Literal["point"] = _kind("point")
    at: list[float] = opt([0.0, 0.0], "the location in the component's coordinates", min_length=1)


class CircleComponent(Component):
    title = "kind = 'circle': the planar circle (LID* 1)"
    kind: Literal["circle"] = _kind("circle")
    latent: Literal["vonmises", "uniform", "gaussian"] = opt("vonmises", "angle density")
    radius: float = opt(1.0, "radius", gt=0)
    mu: float = opt(0.0, "mean angle, vonmises and gaussian")
    kappa: float = opt(1.0, "von Mises concentration", ge=0)
    angle_range: Pair = opt([0.0, 2 * math.pi], "[lo, hi] angles of the uniform latent")
    scale: float = opt(0.5, "angle standard deviation of the gaussian latent", gt=0)
    only_when = {"mu": ("latent", ("vonmises", "gaussian")), "kappa": ("latent", ("vonmises",)),
                 "angle_range": ("latent", ("uniform",)), "scale": ("latent", ("gaussian",))}

    @model_validator(mode="after")
    def _range(self) -> CircleComponent:
        if not self.angle_range[0] < self.angle_range[1]:
            raise rule(f"must be [lo, hi] with lo < hi, got {self.angle_range}", "angle_range")
        return self


class SphereComponent(Component):
    title = "kind = 'sphere': S^d in R^(d+1) (LID* d)"
    kind: Literal["sphere"] = _kind("sphere")
    d: int = opt(2, "intrinsic dimension", ge=1)
    radius: float = opt(1.0, "radius", gt=0)
    latent: Literal["uniform", "gaussian"] = opt("uniform", "uniform, or gaussian around a pole")
    scale: float = opt(0.5, "tangent standard deviation of the gaussian latent", gt=0)
    only_when = {"scale": ("latent", ("gaussian",))}


class TorusComponent(Component):
    title = "kind = 'torus': flat T^d in R^(2d), or the ring 2-torus in R^3 (LID* d)"
    kind: Literal["torus"] = _kind("torus")
    embedding: Literal["flat", "ring"] = opt("flat", "'flat' or 'ring'")
    d: int = opt(2, "intrinsic dimension of the flat torus", ge=1)
    radius: float | list[Annotated[float, Field(gt=0)]] = opt(
        1.0, "radius of every circle of the flat torus, or one per circle")
    R: float = opt(1.0, "major radius of the ring torus; needs 0 < r < R", gt=0)
    r: float = opt(0.4, "minor radius of the ring torus", gt=0)
    latent: Literal["uniform", "gaussian"] = opt("uniform", "angle density")
    mu: float = opt(0.0, "mean angle of the gaussian latent")
    scale: float = opt(0.5, "angle standard deviation of the gaussian latent", gt=0)
    only_when = {"d": ("embedding", ("flat",)), "radius": ("embedding", ("flat",)), "R": ("embedding", ("ring",)),
                 "r": ("embedding", ("ring",)), "mu": ("latent", ("gaussian",)), "scale": ("latent", ("gaussian",))}

    @model_validator(mode="after")
    def _radii(self) -> TorusComponent:
        given = self.model_fields_set
        if isinstance(self.radius, float) and self.radius <= 0:
            raise rule(f"must be greater than 0, got {self.radius}", "radius")
        if isinstance(self.radius, list) and "d" in given and len(self.radius) != self.d:
            raise rule(f"must list one radius per circle (d = {self.d}), got {len(self.radius)}", "radius")
        if {"R", "r"} <= given and not self.r < self.R:
            raise rule(f"must be below R ({self.R}), got {self.r}", "r")
        return self


class PlaneComponent(Component):
    title = "kind = 'plane': an affine d-plane piece (LID* d)"
    kind: Literal["plane"] = _kind("plane")
    d: int = opt(2, "intrinsic dimension", ge=1)
    latent: Literal["uniform", "gaussian"] = opt("uniform", "box [-scale, scale]^d or N(0, scale^2)")
    scale: float = opt(1.0, "half-width of the box or standard deviation", gt=0)


class SquigglyComponent(Component):
    title = "kind = 'squiggly': graph of u -> amp sin(freq u W + phase) (LID* d)"
    kind: Literal["squiggly"] = _kind("squiggly")
    d: int = opt(2, "intrinsic dimension", ge=1)
    extra: int | None = opt(None, "warped coordinates (absent: d)", ge=1)
    latent: Literal["uniform", "gaussian"] = opt("uniform", "density of u, as for plane")
    scale: float = opt(1.0, "half-width of the box or standard deviation of u", gt=0)
    amp: float = opt(0.5, "warp amplitude", ge=0)
    freq: float = opt(2.0, "warp frequency", gt=0)


COMPONENT_MODELS: dict[str, type[Component]] = {
    "point": PointComponent, "circle": CircleComponent, "sphere": SphereComponent,
    "torus": TorusComponent, "plane": PlaneComponent, "squiggly": SquigglyComponent}
AnyComponent = Annotated[Union[tuple(COMPONENT_MODELS.values())], Field(discriminator="kind")]  # type: ignore[misc]


class MixtureData(Closed):
    title = "[data] of synthetic tasks (and LID tasks with source = 'mixture')"
    dim: int = Field(description="required: ambient dimension D", ge=1)
    rotate: bool = opt(False, "randomly rotate every component")
    components: list[AnyComponent] = Field(description="required: [[data.components]] tables, see below",
                                           min_length=1)


class LIDMixtureData(MixtureData):
    title = "[data] of LID tasks with source = 'mixture'"
    source: Literal["mixture"] = opt("mixture", "'mixture', 'skdim' or 'dgm'")


class Manifold(Closed):
    title = "[[data.manifolds]]: one of scikit-dimension's BenchmarkManifolds"
    name: str = Field(description="required: the BenchmarkManifolds name, e.g. 'M7_Roll'", min_length=1)
    d: int | None = opt(None, "intrinsic dimension (absent: the manifold's)", ge=1)
    dim: int | None = opt(None, "ambient dimension (absent: the manifold's)", ge=1)
    n: int = opt(500, "reference points", ge=1)


class SkdimData(Closed):
    title = "[data] of LID tasks with source = 'skdim'"
    source: Literal["skdim"] = Field(description="required: 'skdim'")
    gap: float = opt(1.0, "space between neighbouring manifolds along the first axis", ge=0)
    manifolds: list[Manifold] = Field(description="required: [[data.manifolds]] tables", min_length=1)


class DGMData(Closed):
    title = "[data] of LID tasks with source = 'dgm': the FLIPD paper's synthetic data sets"
    source: Literal["dgm"] = Field(description="required: 'dgm'")
    dataset: Literal["lollipop", "torus_circle", "swiss_roll", "affine_mixture", "squiggly_mixture"] = Field(
        description="required: the data set (mmh_bench/task/data/lid_paper.py)")
    n: int = opt(20000, "training points", ge=1)
    standardize: bool | None = opt(None, "standardise every coordinate (absent: true for the mixtures)")
    center_loc: list[float] = opt([3.0, 3.0], "lollipop: centre of the candy", min_length=2, max_length=2)
    radius: float = opt(1.0, "lollipop: radius of the candy", gt=0)
    stick_end_loc: list[float] = opt([1.5, 1.5], "lollipop: free end of the stick", min_length=2, max_length=2)
    dot_loc: list[float] = opt([0.0, 0.0], "lollipop: the point", min_length=2, max_length=2)
    candy_ratio: float = opt(4.0, "lollipop: weight of the candy", ge=0)
    stick_ratio: float = opt(2.0, "lollipop: weight of the stick", ge=0)
    dot_ratio: float = opt(1.0, "lollipop: weight of the dot", ge=0)
    major_r: float = opt(10.0, "torus_circle: major radius", gt=0)
    minor_r: float = opt(1.0, "torus_circle: minor radius", gt=0)
    mix_ratio: float = opt(0.5, "torus_circle: fraction on the circle", ge=0, le=1)
    manifold_dims: list[Annotated[int, Field(ge=1)]] | None = opt(
        None, "mixtures (required there): intrinsic dimension of each piece", min_length=1)
    ambient_dim: int | None = opt(None, "mixtures (required there): ambient dimension D", ge=1)
    mixture_probs: list[Annotated[float, Field(ge=0)]] | None = opt(None, "mixtures: piece weights (absent: equal)")
    sample_distr: Literal["uniform", "normal", "laplace"] = opt("uniform", "mixtures: latent density")
    distance_between_modes: float = opt(10.0, "mixtures: scale of the mode simplex", gt=0)
    frequency: float = opt(10.0, "squiggly_mixture: sine frequency", gt=0)
    kappa_control: float = opt(1e-4, "squiggly_mixture: 1 - sine amplitude factor", gt=0, le=1)
    n_transforms: int = opt(5, "squiggly_mixture: warp-flip-rotate repetitions", ge=0)

    @model_validator(mode="after")
    def _keys_of_dataset(self) -> DGMData:
        own = {"lollipop": {"center_loc", "radius", "stick_end_loc", "dot_loc", "candy_ratio", "stick_ratio",
                            "dot_ratio"},
               "torus_circle": {"major_r", "minor_r", "mix_ratio"}, "swiss_roll": set(),
               "affine_mixture": {"manifold_dims", "ambient_dim", "mixture_probs", "sample_distr",
                                  "distance_between_modes"}}
        own["squiggly_mixture"] = own["affine_mixture"] | {"frequency", "kappa_control", "n_transforms"}
        shared = {"source", "dataset", "n", "standardize"}
        for key in type(self).model_fields:
            if key in self.model_fields_set and key not in shared | own[self.dataset]:
                raise rule(f"is not read by dataset {self.dataset!r}", key)
        if "mixture" in self.dataset:
            for key in ("manifold_dims", "ambient_dim"):
                if getattr(self, key) is None:
                    raise rule(f"is required by dataset {self.dataset!r}", key)
            if max(self.manifold_dims) > self.ambient_dim:
                raise rule(f"must not exceed ambient_dim ({self.ambient_dim})", "manifold_dims")
            if self.mixture_probs is not None and len(self.mixture_probs) != len(self.manifold_dims):
                raise rule("must give one weight per entry of manifold_dims", "mixture_probs")
        return self


class Queries(Closed):
    title = "[queries] of LID tasks"
    n_per_component: int = opt(200, "query points per component", ge=1)


class SkdimQueries(Closed):
    title = "[queries] of LID tasks with source = 'skdim'"
    n_per_component: int | None = opt(None, "query points per manifold (absent: the manifold's n)", ge=1)


# -- images (mmh_bench/task/data/images.py, captions.py) ---------------------------------------------
class ImageData(Closed):
    title = "[data] of image tasks: a packaged image source with injected memorization sources"
    source: ImageSource = opt("digits", "image source")
    side: int | None = opt(None, "resize to side x side (absent: the source's)", ge=1)
    classes: list[Annotated[int, Field(ge=0)]] | None = opt(None, "classes used (absent: all)", min_length=1)
    per_class: int = opt(50, "single images per common class", ge=1)
    rare_class: int | None = opt(None, "class kept to rare_n single images (OD-Mem sources)", ge=0)
    rare_n: int = opt(0, "images of the rare class", ge=0)
    dup_n: int = opt(0, "images duplicated dup_copies times (DD-Mem sources)", ge=0)
    dup_copies: int = opt(1, "copies of each duplicated image", ge=1)
    heldout_scale: int | None = opt(None, "held-out real images (C_T, chance test) per training image of each "
                                          "class, at most (absent: as many as the unused images allow)", ge=1)

    @model_validator(mode="after")
    def _classes(self) -> ImageData:
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise rule(f"must not repeat a class, got {self.classes}", "classes")
            if self.rare_class is not None and self.rare_class not in self.classes:
                raise rule(f"must be one of classes {self.classes}, got {self.rare_class}", "rare_class")
        return self

    def class_list(self, y: Any) -> list[int]:
        """The classes used: ``classes``, else every label in ``y``."""
        return [int(c) for c in (self.classes if self.classes is not None else sorted(set(y.tolist())))]

    @property
    def templates(self) -> tuple[int, int]:
        """(templates, variants of each): image tasks place none; text-to-image tasks declare them."""
        return 0, 0


class CaptionedData(ImageData):
    title = "[data] of text-to-image tasks: image data as for image tasks, plus captions"
    unique_singles: int = opt(0, "single images with a caption of their own (controls)", ge=0)
    novel_prompts: int = opt(0, "captions in the unique captions' style never trained on", ge=0)
    attribute_captions: bool = opt(
        False, "generic captions name the class and the image's brightness within its class ('a dark coat on a "
        "plain background'); one template per (class, brightness) is held out of training")
    composed_prompts: int = opt(
        0, "attribute_captions only: held-out combinations of trained words to generate from (in-distribution "
        "negatives)", ge=0)
    tm_n: int = opt(0, "templates sharing one caption each (template memorization)", ge=0)
    tm_variants: int = opt(10, "near-identical variants per template", ge=2)
    tm_patch: int = opt(6, "side of the square patch each variant alters, in pixels", ge=1)
    tm_delta: float = opt(0.2, "brightness shift of that patch in [-1, 1] units", gt=0)
    max_tokens: int = opt(16, "caption length in word pieces with [CLS] and [SEP]", ge=3)

    @property
    def templates(self) -> tuple[int, int]:
        return self.tm_n, self.tm_variants


# -- Stable Diffusion prompt sets (mmh_bench/task/data/prompts.py) --------------------------------------
class PromptFileRef(Closed):
    title = "a prompt file of one's own, pinned by sha256 (in [data] positives / negatives / subtypes)"
    file: str = Field(description="required: path, relative to the spec file", min_length=1)
    sha256: str = Field(description="required: sha256 of the file", pattern=r"^[0-9a-f]{64}$")
    format: Literal["jsonl", "csv", "txt", "json"] = Field(description="required: file format")
    name: str | None = opt(None, "name recorded in the task meta (absent: the file name)")


PromptSetRef = Union[Annotated[str, Field(min_length=1)], PromptFileRef]


class SDData(Closed):
    title = "[data] of Stable Diffusion tasks: registered prompt-set names or pinned files"
    positives: PromptSetRef = Field(description="required: the memorized prompts")
    negatives: PromptSetRef = Field(description="required: the one fixed negative set")
    subtypes: PromptSetRef | None = opt(None, "prompts with VM/TM types, matched by caption")
    max_positives: int = opt(0, "a seeded subset of this many positives (0: all)", ge=0)
    max_negatives: int = opt(0, "a seeded subset of this many negatives (0: all)", ge=0)

    @model_validator(mode="after")
    def _registered(self) -> SDData:
        from mmh_bench.task.data.prompts import PROMPT_FILES
        for key in ("positives", "negatives", "subtypes"):
            ref = getattr(self, key)
            if isinstance(ref, str) and ref not in PROMPT_FILES:
                raise rule(f"names no registered prompt set: {ref!r}{did_you_mean(ref, PROMPT_FILES)}; "
                           f"known: {', '.join(sorted(PROMPT_FILES))}", key)
        return self


# -- whole specs, one per builder ----------------------------------------------------------------
def section_model(annotation: Any) -> type[Closed] | None:
    """The table model behind a field's annotation (Optional and list unwrapped), else None."""
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, Closed):
            return arg
    return None


def table(model: type[Closed], description: str = "") -> Any:
    """An optional section: absent, it is the table of its defaults."""
    return Field(default_factory=model, description=description)


#: order of the sections in messages and docs
SECTION_ORDER = ("data", "model", "sampling", "queries", "labels", "balance", "placement", "instances")


class TaskModel(Closed):
    """The keys every task spec has; subclasses fix family, builder and track and add sections."""

    builder_name: ClassVar[str] = ""
    name: str = Field(description="required: the task name, equal to the file name without .toml",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str | int = Field(description="required: bump when the task's meaning changes")
    family: str = Field(description="required: the task family, equal to builder")
    builder: str = Field(description="required: the builder that makes the task")
    seed: int = opt(0, "seed of every random stream of the dev instance", ge=0)
    description: str = opt("", "what the task is, for people")
    track: Literal["memorization"] = opt("memorization", "'memorization' or 'lid'")
    suites: list[str] = opt([], "suites the task belongs to")
    placement: Placement = table(Placement, "test-instance randomisation")
    instances: Instances = table(Instances, "dev instances")

    @model_validator(mode="after")
    def _family(self) -> TaskModel:
        if self.family != self.builder_name:
            raise rule(f"must be {self.builder_name!r}, the family of builder {self.builder_name!r}, "
                       f"got {self.family!r}", "family")
        return self

    @property
    def conditional(self) -> bool:
        """Whether the task's model is conditional (``[model] conditional``; False without a model)."""
        return "model" in type(self).model_fields and bool(self.model.conditional)  # type: ignore[attr-defined]

    def written(self, section: str) -> set[str]:
        """The keys the spec itself writes in ``[section]`` (none for a section its builder lacks)."""
        return set(getattr(self, section).model_fields_set) if section in type(self).model_fields else set()

    @classmethod
    def sections(cls) -> list[str]:
        keys = [k for k, f in cls.model_fields.items() if section_model(f.annotation)]
        return sorted(keys, key=lambda k: SECTION_ORDER.index(k) if k in SECTION_ORDER else len(SECTION_ORDER))

    @classmethod
    def unknown(cls, key: str, value: Any) -> str:
        sections = cls.sections()
        if isinstance(value, (dict, list)):
            hint = did_you_mean(key, sections, "[{}]") or (
                f" (builder {cls.builder_name!r} reads {', '.join(f'[{s}]' for s in sections)})")
            return f"unknown section [{key}]{hint}"
        scalars = [k for k in cls.model_fields if k not in sections]
        return f"unknown top-level key {key!r}{did_you_mean(key, scalars)}"


class LabelledTask(TaskModel):
    """A task whose samples a trained denoiser generates and the copy test labels."""

    data: ImageData = table(ImageData)
    model: MLPModel = table(MLPModel)
    sampling: Sampling = table(Sampling)
    labels: CopyLabels
    balance: Balance = table(Balance)

    @model_validator(mode="after")
    def _conditional_only(self) -> LabelledTask:
        """p_uncond and guidance are only read by conditional models: refuse them elsewhere."""
        if self.model.conditional:
            return self
        if "p_uncond" in self.model.model_fields_set:
            raise rule("is only read when [model] conditional = true", "model", "p_uncond")
        if isinstance(self.sampling, Sampling) and "guidance" in self.sampling.model_fields_set:
            raise rule("is only read when [model] conditional = true", "sampling", "guidance")
        return self


class SyntheticTask(LabelledTask):
    builder_name = "synthetic"
    data: MixtureData


class ImageTask(LabelledTask):
    builder_name = "image"
    model: PixelMLPModel = table(PixelMLPModel)


class CaptionBalance(Balance):
    title = "[balance] of text-to-image tasks"
    require_subtypes: list[Literal[CONSTRUCTED_SUBTYPES + PROMPT_SUBTYPES]] = opt(  # type: ignore[valid-type]
        [], "subtypes that must each have min_per_subtype samples (VM and TM where the task places templates)")


class TextToImageTask(LabelledTask):
    builder_name = "text-to-image"
    data: CaptionedData = table(CaptionedData)
    model: CrossAttnModel
    sampling: PromptSampling = table(PromptSampling)
    balance: CaptionBalance = table(CaptionBalance)

    @model_validator(mode="after")
    def _attributes(self) -> TextToImageTask:
        if self.data.composed_prompts and not self.data.attribute_captions:
            raise rule("needs attribute_captions = true (it holds out attribute captions)", "data", "composed_prompts")
        return self


class LIDTask(TaskModel):
    """The LID track: query points with known LID*, no labels."""

    builder_name = "lid"
    track: Literal["lid"] = Field(description="required: 'lid'")
    queries: Queries = table(Queries)


class LIDMixtureTask(LIDTask):
    data: LIDMixtureData
    model: LIDModel = table(LIDModel)


class LIDSkdimTask(LIDTask):
    data: SkdimData
    queries: SkdimQueries = table(SkdimQueries)


class LIDPaperTask(LIDTask):
    data: DGMData
    model: LIDModel = table(LIDModel)


class StableDiffusionTask(TaskModel):
    builder_name = "stable-diffusion"
    data: SDData
    model: SDModel
    sampling: SDSampling = table(SDSampling)
    balance: PromptBalance = table(PromptBalance)


# -- values as TOML writes them ------------------------------------------------------------------
def show(value: Any) -> str:
    """A value as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
