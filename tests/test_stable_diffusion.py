"""The Stable Diffusion track end to end on a tiny locally built pipeline (random weights, CPU).

Covers the real loading path (save_pretrained -> the loader a user's --model goes through), the
ScoreModel adapter (shapes, exact alpha_bar, conditions, JVP, cross-attention), the builder with
small pinned prompt files, the evaluator with shipped detectors, and the CLI's --model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from mmh_bench.task.build import BuildError, build_task  # noqa: E402
from mmh_bench.cli.main import main  # noqa: E402
from mmh_bench.task.instance import SUBTYPE_CODE  # noqa: E402
from mmh_bench.task.models import stable_diffusion as sdm  # noqa: E402
from mmh_bench.registry import all_detectors, all_tasks, get_task, make_detector, parse_ref  # noqa: E402
from mmh_bench.evaluation.runner import compute_scores, evaluate  # noqa: E402
from mmh_bench.task.spec import load_spec  # noqa: E402

from sd_tiny import TOKENS, build_tiny_pipeline, write_task_spec  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sd_prompts"
#: detectors written against the ScoreModel interface that should run unchanged on SD
SD_DETECTORS = ["random", "flipd", "cfg-norm-posthoc", "sharpness-posthoc", "attention-entropy-posthoc",
                "one-step-error-posthoc", "cfg-norm", "sharpness", "attention-entropy(layer=0)", "one-step-dcs"]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture()
def few_boots(monkeypatch):
    """The bootstrap CI is tested in test_metrics; here 20 resamples keep the plumbing test fast."""
    import mmh_bench.evaluation.metrics as metrics
    orig = metrics.bootstrap_auroc_ci
    monkeypatch.setattr(metrics, "bootstrap_auroc_ci", lambda y, s, **kw: orig(y, s, n_boot=20))


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def model(pipe_dir):
    pipe = sdm.load_pipeline(pipe_dir, device="cpu")
    return sdm.StableDiffusionScoreModel(pipe, ["a red square", "a blue circle"], shape=(4, 8, 8))


def _spec(folder: Path, pipe: Path, name: str = "sd-tiny", gens: int = 1) -> Path:
    """A tiny SD task over locally written prompt files pinned by sha256."""
    return write_task_spec(
        folder, pipe, name=name, gens=gens,
        positives=";Caption;URL;type;mean_sscd;max_sscd;Index\n0;the no limits podcast;u;VM;0.8;0.9;1\n"
                  "1;a \"quoted\" template shirt;u;TM;0.2;0.3;2\n2;living room rug;u;TM;0.1;0.2;3\n",
        negatives="a dog on a beach\na bowl of fruit\na city at night",
        tail='\n[balance]\nmin_memorized = 0.3\nmax_memorized = 0.7\nrequire_subtypes = ["VM", "TM"]\n')


# -- loading ---------------------------------------------------------------------------------------
def test_loader_reads_a_saved_pipeline_folder(pipe_dir):
    pipe = sdm.load_pipeline(pipe_dir, device="cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.safety_checker is None
    assert pipe.unet.dtype == torch.float32  # fp32 on the CPU, fp16 only on a GPU
    assert sdm.load_pipeline(pipe_dir, device="cpu") is pipe  # kept for the evaluation after a build
    assert not any(p.requires_grad for p in pipe.unet.parameters())
    with pytest.raises(sdm.ModelLoadError, match="does not exist"):
        sdm.load_pipeline(pipe_dir.parent / "missing-folder", device="cpu")
    # the fingerprint names the weights, not the dtype they were loaded in (fp16 build, fp32 check)
    fp32 = sdm.fingerprint(pipe)
    half = sdm.load_pipeline(pipe_dir, device="cpu", dtype="float16")
    assert half.unet.dtype == torch.float16 and sdm.fingerprint(half) == fp32
    assert sdm.load_pipeline(pipe_dir, device="cpu") is not pipe  # one model kept at a time


def test_source_override_and_default():
    assert sdm.resolve_source("CompVis/stable-diffusion-v1-4") == "CompVis/stable-diffusion-v1-4"
    with sdm.model_source("/weights/sd14"):
        assert sdm.resolve_source("CompVis/stable-diffusion-v1-4") == "/weights/sd14"
    with sdm.model_source(None):
        assert sdm.resolve_source("x/y") == "x/y"
    with pytest.raises(sdm.ModelLoadError):
        sdm.resolve_source(None)


# -- adapter ---------------------------------------------------------------------------------------
def test_alpha_bar_is_the_schedulers_alphas_cumprod(model):
    ac = model.pipe.scheduler.alphas_cumprod
    ks = torch.tensor([0, 9, 499, 999])
    t = (ks + 1).float() / 1000  # the right end of timestep k's interval
    assert torch.equal(model.timesteps(t), ks)
    assert torch.allclose(model.alpha_bar(t), ac[ks].float())
    assert torch.equal(model.timesteps(torch.tensor([0.0095, 0.5001])), torch.tensor([9, 500]))
    assert float(model.alpha_bar(torch.tensor(0.01))) == pytest.approx(float(ac[9]), rel=1e-6)
    assert torch.all(model.sigma(t) ** 2 + model.alpha_bar(t) - 1 < 1e-6)


def test_eps_shapes_conditions_and_counters(model):
    x = torch.randn(3, 4, 8, 8)
    x[2] = x[0]
    model.reset_counters()
    e_u = model.eps(x, 0.5)
    assert e_u.shape == (3, 4, 8, 8) and e_u.dtype == torch.float32 and e_u.device.type == "cpu"
    e_c = model.eps(x, 0.5, [0, 1, "a red square"])
    assert model.nfe == 6
    assert not torch.allclose(e_c, e_u, atol=1e-4)  # the prompt changes the prediction
    assert torch.allclose(e_c[0], e_c[2], atol=1e-5)  # id 0 is the table's first prompt
    e_mixed = model.eps(x, 0.5, [None, 1, None])  # per-sample None = empty prompt
    assert torch.allclose(e_mixed[0], e_u[0], atol=1e-5) and torch.allclose(e_mixed[1], e_c[1], atol=1e-5)
    model.rows_per_call = 2  # larger requests are split into several network calls
    try:
        assert torch.allclose(model.eps(x, 0.5, [0, 1, "a red square"]), e_c, atol=1e-5)
    finally:
        model.rows_per_call = None
    with pytest.raises(ValueError, match="prompt id"):
        model.eps(x[:1], 0.5, [7])
    with pytest.raises(ValueError, match="shape"):
        model.eps(torch.randn(2, 4, 4, 4), 0.5)


def test_score_is_minus_eps_over_sigma(model):
    x = torch.randn(2, 4, 8, 8)
    s = model.score(x, 0.3, [0, None])
    e = model.eps(x, 0.3, [0, None])
    assert torch.allclose(s, -e / model.sigma(torch.tensor(0.3)), atol=1e-5)


def test_eps_jvp_matches_finite_differences(model):
    torch.manual_seed(1)
    x, v = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    model.reset_counters()
    out, jv = model.eps_jvp(x, 0.2, v, [0, None])
    assert model.njvp == 2 and out.shape == jv.shape == x.shape
    assert torch.allclose(out, model.eps(x, 0.2, [0, None]), atol=1e-5)
    h = 1e-3
    fd = (model.eps(x + h * v, 0.2, [0, None]) - model.eps(x - h * v, 0.2, [0, None])) / (2 * h)
    rel = (jv - fd).norm() / fd.norm()
    assert rel < 1e-2, float(rel)


def test_cross_attention_is_a_distribution_over_tokens(model):
    x = torch.randn(2, 4, 8, 8)
    model.reset_counters()
    a = model.cross_attention(x, 0.5, [0, 1])
    assert a.shape == (2, TOKENS) and model.nfe == 2
    assert torch.all(a >= 0) and torch.allclose(a.sum(1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(a[0], a[1])  # different prompts attend differently
    # the recording processor computes the same output as the stock one
    store: list = []
    with sdm._processors(model.unet, lambda: sdm._RecordingCrossAttention(store), only_cross=True):
        recorded = model.eps(x, 0.5, [0, 1])
    assert len(store) == 4  # the tiny UNet's cross-attention layers, one record each
    assert torch.allclose(recorded, model.eps(x, 0.5, [0, 1]), atol=1e-5)
    per_layer = torch.stack([model.cross_attention(x, 0.5, [0, 1], layer=k) for k in range(4)])
    assert torch.allclose(per_layer.mean(0), a, atol=1e-6)
    with pytest.raises(ValueError, match="layer 4 does not exist; this UNet has 4"):
        model.cross_attention(x, 0.5, [0, 1], layer=4)
    with pytest.raises(ValueError):
        model.cross_attention(x, 0.5, None)


def test_v_prediction_is_converted_to_eps(tmp_path):
    vdir = build_tiny_pipeline(tmp_path / "tiny-v", seed=0, prediction_type="v_prediction")
    pipe = sdm.load_pipeline(vdir, device="cpu")
    m = sdm.StableDiffusionScoreModel(pipe, ["a cat"])
    x, t = torch.randn(2, 4, 8, 8), torch.tensor(0.4)
    k = m.timesteps(t)
    with torch.no_grad():
        v = pipe.unet(x, k.expand(2), encoder_hidden_states=m.embed([0, 0], 2)).sample
    ab = m.alpha_bar(t)
    assert torch.allclose(m.eps(x, t, [0, 0]), ab.sqrt() * v + (1 - ab).sqrt() * x, atol=1e-5)


def test_initial_noise_is_seeded_on_the_cpu():
    a, b = sdm.initial_noise((4, 8, 8), 5), sdm.initial_noise((4, 8, 8), 5)
    assert torch.equal(a, b) and not torch.equal(a, sdm.initial_noise((4, 8, 8), 6))


# -- builder, evaluator, CLI -----------------------------------------------------------------------
def test_build_and_evaluate_end_to_end(tmp_path, pipe_dir, few_boots):
    spec = load_spec(_spec(tmp_path / "task", pipe_dir, gens=2))
    inst = build_task(spec, tmp_path / "cache", progress=False)
    n = 6 * 2
    assert inst.samples.shape == (n, 4, 8, 8) and inst.samples.dtype == np.float32
    # rows and prompt ids may be in any order: read rows in (prompt file position, generation) order
    written = ["the no limits podcast", 'a "quoted" template shirt', "living room rug",
               "a dog on a beach", "a bowl of fruit", "a city at night"]
    prompts = inst.arrays["prompts"]
    assert prompts.dtype.kind == "U" and sorted(prompts.tolist()) == sorted(written)
    rank = np.array([written.index(prompts[c]) for c in inst.cond])
    order = np.lexsort((inst.arrays["generation"], rank))
    assert inst.labels[order].tolist() == [1] * 6 + [0] * 6
    assert inst.subtype[order].tolist() == [SUBTYPE_CODE[s] for s in "VM VM TM TM TM TM".split()] + [0] * 6
    assert rank[order].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert inst.arrays["generation"][order].tolist() == [0, 1] * 6
    meta = inst.meta
    assert meta["model"]["kind"] == "stable-diffusion" and meta["model"]["latent_shape"] == [4, 8, 8]
    assert meta["negative_set_sha256"] == meta["prompt_sets"]["negatives"]["file_sha256"]
    assert meta["sampling"]["steps"] == 3 and meta["sampling"]["generations_per_prompt"] == 2
    # two generations of one prompt start from different noise, kept with the sample
    assert not np.allclose(inst.samples[order[0]], inst.samples[order[1]])
    assert inst.noise.shape == inst.samples.shape and not np.allclose(inst.noise[order[0]], inst.noise[order[1]])
    sampler = inst.sampler()  # DDIM on the scheduler's own grid: the generations replay
    assert sampler is not None and sampler.steps == 3 and sampler.guidance == 7.5

    m = inst.score_model()  # through the registered loader, as the evaluator does
    assert isinstance(m, sdm.StableDiffusionScoreModel) and m.prompts == prompts.tolist()

    from mmh_bench_baselines.flipd import FLIPD
    known = set(all_detectors())
    dets = [FLIPD(t0=0.05, probes=2)] + [d for d in SD_DETECTORS if d.split("(")[0] in known and d != "flipd"]
    report = evaluate([spec], dets, tmp_path / "results", cache_dir=tmp_path / "cache", progress=False,
                      batch_size=4)
    assert not report.failed, [json.loads(p.read_text())["error"] for p in report.failed]
    assert len(report.ran) + len(report.not_applicable) == len(dets)
    # keyed by detector name: results of non-default parameters are named flipd(probes=2,t0=0.05)
    by_det = {parse_ref(json.loads(p.read_text())["detector"])[0]: json.loads(p.read_text()) for p in report.ran}
    assert {"random", "flipd"} <= set(by_det)
    for res in by_det.values():
        assert res["status"] == "ok" and 0.0 <= res["metrics"]["auroc"] <= 1.0
    assert by_det["flipd"]["cost"]["jvp_per_sample"] == 2  # Hutchinson: 2 probes (D = 256 > 64)
    for name in ("cfg-norm", "sharpness", "attention-entropy", "one-step-dcs"):
        assert by_det[name]["access"] == "generation" and by_det[name]["group"] == "generation-time"
    assert by_det["cfg-norm"]["cost"]["nfe_per_sample"] == 2  # step 1: both branches, read once
    # negatives keep their source (here the file's name: custom files name no origin)
    assert set(inst.arrays["negative_source"][inst.labels == 0]) == {"nmem.txt"}
    assert list(by_det["random"]["metrics"]["auroc_by_source"]) == ["nmem.txt"]


def test_generation_time_defaults_are_the_published_protocol(pipe_dir):
    """Jeon et al.'s Table 1: DDIM 50 steps, guidance 7.5, one generation per prompt, the statistic
    at step 1 (timestep 981); n = 4 and 5 / 50 steps are one parameter away."""
    for task in ("sd-v1-4-jeon", "sd-v2"):
        s = get_task(task).model.sampling
        assert (s.scheduler, s.steps, s.guidance_scale, s.generations_per_prompt) == ("DDIM", 50, 7.5, 1)
    for name in ("cfg-norm", "sharpness", "attention-entropy", "one-step-dcs"):
        det = make_detector(name)
        assert (det.n_steps, det.generations) == (1, 1)
    assert make_detector("cfg-norm(n_steps=5, generations=4)").get_params() == {"n_steps": 5, "generations": 4}
    pipe = sdm.load_pipeline(str(pipe_dir))
    sampler = sdm.ddim_sampler(pipe, "DDIM", 50, 7.5)
    model = sdm.StableDiffusionScoreModel(pipe, prompts=["x"])
    sched = sdm.make_scheduler(pipe, "DDIM")
    sched.set_timesteps(50)
    assert model.timesteps(torch.as_tensor(sampler.times())).tolist() == sched.timesteps.tolist()
    assert sched.timesteps[0] == 981 and sampler.guidance == 7.5
    assert sdm.ddim_sampler(pipe, "PNDM", 50, 7.5) is None  # not replayable: generation-time rows n/a


def test_cli_run_with_model_and_fingerprint_guard(tmp_path, pipe_dir, capsys, few_boots):
    spec_path = _spec(tmp_path / "task", Path("/nonexistent/sd"), name="sd-tiny-cli")
    args = ["run", "--tasks", str(spec_path), "--detectors", "random", "--results", str(tmp_path / "res"),
            "--cache", str(tmp_path / "cache"), "-q"]
    # the spec's id does not exist here: without --model the build fails with a clear message
    assert main(args) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(args + ["--model", str(pipe_dir)]) == 0
    assert len(list((tmp_path / "res" / "sd-tiny-cli" / "v1").glob("dev-*/random.json"))) == 1  # one instance folder
    # other weights than the ones that generated the cached latents are refused
    other = build_tiny_pipeline(tmp_path / "other-sd", seed=1)
    assert main(args + ["--model", str(other), "--force"]) == 2
    assert "fingerprint" in capsys.readouterr().err


def test_builder_refuses_overlapping_sets(tmp_path, pipe_dir):
    folder = tmp_path / "task"
    spec_path = _spec(folder, pipe_dir, name="sd-overlap")
    same = (folder / "mem.csv").read_text()
    (folder / "nmem.csv").write_text(same)
    text = spec_path.read_text().replace(
        'format = "txt"', 'format = "csv"').replace(
        "nmem.txt", "nmem.csv").replace(
        hashlib.sha256((folder / "nmem.txt").read_bytes()).hexdigest(),
        hashlib.sha256(same.encode()).hexdigest())
    spec_path.write_text(text)
    with pytest.raises(BuildError, match="both positive and negative"):
        build_task(load_spec(spec_path), tmp_path / "cache", progress=False)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared prompt copies not present")
def test_build_with_the_real_prompt_sets(tmp_path, pipe_dir, monkeypatch):
    monkeypatch.setenv("MMH_BENCH_SD_PROMPTS", str(SHARED))
    spec_path = _spec(tmp_path / "task", pipe_dir, name="sd-real-subset")
    text = spec_path.read_text()
    start, end = text.index("[data]"), text.index("[model]")
    text = text[:start] + ('[data]\npositives = "webster500"\nnegatives = "nemo-unmemorized500"\n'
                           'subtypes = "nemo-memorized500"\nmax_positives = 6\nmax_negatives = 6\n\n') + text[end:]
    text = text.replace('require_subtypes = ["VM", "TM"]', "require_subtypes = []")
    spec_path.write_text(text)
    inst = build_task(load_spec(spec_path), tmp_path / "cache", progress=False)
    assert inst.labels.sum() == 6 and len(inst.labels) == 12
    from mmh_bench.task.data.prompts import load_prompt_set
    types = load_prompt_set("nemo-memorized500").type_of()
    prompts = inst.arrays["prompts"]
    pos = inst.labels == 1
    assert [SUBTYPE_CODE[types[prompts[c]]] for c in inst.cond[pos]] == inst.subtype[pos].tolist()
    assert inst.meta["prompt_sets"]["negatives"]["name"] == "nemo-unmemorized500"


def test_shipped_sd_tasks_are_opt_in():
    sd = {n: s for n, s in all_tasks().items() if s.family == "stable-diffusion"}
    assert {"sd-v1-4", "sd-v1-5", "sd-v1-4-jeon", "sd-v2"} <= set(sd)
    # the SD 2 prompts were found and scored on the 768 px v-prediction model, and need it
    v2 = sd["sd-v2"].model.model
    assert v2.id == "stabilityai/stable-diffusion-2" and v2.generation == "sd2"
    assert sdm.GENERATIONS["sd2"] == {"cross_attention_dim": 1024, "sample_size": 96,
                                      "prediction_type": "v_prediction"}
    for name in ("sd-v1-4", "sd-v1-5", "sd-v1-4-jeon"):
        assert sd[name].model.model.generation == "sd1", name
    from mmh_bench.task.data.prompts import PROMPT_FILES
    for name, spec in sd.items():
        assert spec.suites == ("stable-diffusion",), name  # never in the default suite
        data, samp = spec.model.data, spec.model.sampling
        assert data.positives in PROMPT_FILES and data.negatives in PROMPT_FILES
        assert spec.model.model.id and spec.conditional
        assert samp.steps >= 1 and samp.generations_per_prompt >= 1
    assert os.environ.get("MMH_BENCH_CACHE")  # conftest isolates the cache


# -- the issues a GPU user met (issue 18) ------------------------------------------------------------
class _Stop(Exception):
    """Raised by the UNet probe once it has seen its inputs."""


@pytest.fixture()
def meta_model(pipe_dir):
    """The adapter over a pipeline on the "meta" device: a stand-in for a GPU (tensors left on the
    CPU cannot reach it unnoticed), with a probe that records every tensor the UNet is handed."""
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(pipe_dir, safety_checker=None, requires_safety_checker=False)
    pipe.unet.to("meta")
    pipe.text_encoder.to("meta")
    m = sdm.StableDiffusionScoreModel(pipe, ["a red square"], shape=(4, 8, 8))
    seen: list[torch.device] = []

    def probe(module, args, kwargs):
        seen.extend(a.device for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor))
        raise _Stop

    pipe.unet.register_forward_pre_hook(probe, with_kwargs=True)
    return m, seen


@pytest.mark.parametrize("call", ["eps", "eps_jvp", "cross_attention", "score"])
def test_every_tensor_handed_to_the_unet_is_on_the_models_device(meta_model, call):
    m, seen = meta_model
    assert m.device.type == "meta"
    x = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)  # CPU input
    args = {"eps": (x, 0.5, [0, None]), "eps_jvp": (x, 0.5, x, [0, None]),
            "cross_attention": (x, 0.5, [0, 0]), "score": (x, 0.5, [0, None])}[call]
    with pytest.raises(_Stop):
        getattr(m, call)(*args)
    assert len(seen) >= 3 and {d.type for d in seen} == {"meta"}, seen  # sample, timesteps, text states


def _cross_attn_modules_in_call_order(model) -> list:
    """The UNet's cross-attention modules in the order a forward runs them."""
    order: list = []
    mods = [m for n, m in model.unet.named_modules() if n.endswith("attn2")]
    hooks = [m.register_forward_hook(lambda mod, a, o: order.append(mod)) for m in mods]
    try:
        model.eps(torch.zeros(1, 4, 8, 8), 0.5, [0])
    finally:
        for h in hooks:
            h.remove()
    return order


def test_attention_entropy_sign_and_layer_on_a_known_case(pipe_dir, few_boots):
    """Zero keys make a layer's attention exactly uniform over the TOKENS positions: its entropy
    is log(TOKENS), the most dispersed attention there is, which Ren et al. read as memorized.
    The detector must return +log(TOKENS) from that layer (sign and layer pinned), and its score
    must be Ren's detect.py formula on the adapter's attention."""
    from mmh_bench import Batch
    from mmh_bench.api.context import Context, TaskInfo
    from mmh_bench_baselines._common import noised, row_noise
    from mmh_bench_baselines.attention import ATTN_STREAM, AttentionEntropy

    pipe = sdm.load_pipeline(pipe_dir, device="cpu", dtype="float32")
    model = sdm.StableDiffusionScoreModel(pipe, ["a red square", "a blue circle"], shape=(4, 8, 8))
    layers = _cross_attn_modules_in_call_order(model)
    assert len(layers) == 4
    saved = [{k: v.clone() for k, v in m.to_k.state_dict().items()} for m in layers]
    try:
        with torch.no_grad():
            for p in layers[3].to_k.parameters():
                p.zero_()
            for m in layers[:3]:  # sharpen the others well away from uniform
                for p in m.to_k.parameters():
                    p.mul_(300.0)
        x = torch.randn(3, 4, 8, 8)
        uniform = model.cross_attention(x, 0.9, [0, 1, 0], layer=3)
        assert torch.allclose(uniform, torch.full_like(uniform, 1 / TOKENS), atol=1e-6)
        assert not torch.allclose(model.cross_attention(x, 0.9, [0, 1, 0], layer=2), uniform, atol=1e-3)

        batch = Batch(x=x.numpy(), cond=[0, 1, 0], index=np.arange(3))
        info = TaskInfo(name="sd-tiny", family="stable-diffusion", shape=(4, 8, 8), conditional=True, n_samples=3)

        def score(det):
            return det.score(batch, Context(det.name, det.access, info, seed=0, model=model))
        ren = AttentionEntropy(layer=3, n_steps=1, schedule_steps=50, t_start=0.982)
        np.testing.assert_allclose(score(ren), np.log(TOKENS), rtol=1e-6)
        averaged = score(AttentionEntropy(n_steps=1, schedule_steps=50, t_start=0.982))
        assert np.all(averaged < np.log(TOKENS) - 0.02)  # the other layers are not uniform
        # two steps: the mean over steps of Ren's formula, (-a log a).sum over tokens, plus sign
        det = AttentionEntropy(layer=2, n_steps=2, schedule_steps=50, t_start=0.982)
        z = row_noise(Context(det.name, det.access, info, seed=0, model=model), batch.index, (4, 8, 8), ATTN_STREAM)
        ref = np.zeros(3)
        for t in det.times():
            a = model.cross_attention(noised(model, batch.x, t, z), t, batch.cond, layer=2).double().numpy()
            ref += (-a * np.log(a)).sum(1) / 2
        np.testing.assert_allclose(score(det), ref, rtol=1e-6)
        assert det.times()[:2] == pytest.approx([0.982, 0.962], abs=1e-4)
        first = AttentionEntropy(n_steps=3, schedule_steps=50, t_start=0.982).times()
        assert model.timesteps(torch.tensor(first)).tolist() == [981, 961, 941]  # DDIM's first steps
    finally:
        for m, state in zip(layers, saved):
            m.to_k.load_state_dict(state)


def test_rows_per_call_from_memory_env_and_out_of_memory(model, monkeypatch):
    x = torch.randn(5, 4, 8, 8)
    want = model.eps(x, 0.5, [0, 1, 0, 1, 0])
    assert model.rows_for("forward") == sdm.CPU_ROWS and model.jvp_slice() is None  # CPU defaults
    # on a device with 24 GiB free: fewer rows for fp32 JVPs than for forwards, within bounds
    fresh = sdm.StableDiffusionScoreModel(model.pipe, model.prompts, shape=(4, 8, 8))
    monkeypatch.setattr(fresh, "_free_bytes", lambda: 24 * 2**30)
    assert 1 <= fresh.rows_for("jvp") <= fresh.rows_for("forward") <= sdm.MAX_AUTO_ROWS
    assert fresh.attention_bytes(1) == sdm.JVP_MAPS * 64 * 64 * 4  # 8x8 latents: 64 queries, fp32
    assert fresh.jvp_slice() == fresh._top_heads()  # tiny maps: a whole row's heads fit
    # an automatic choice that runs out of memory is halved and the call retried
    calls: list[int] = []
    base = sdm.ScoreModel.eps

    def tight(self, y, t, cond=None):
        calls.append(len(y))
        if len(y) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return base(self, y, t, cond)
    monkeypatch.setattr(sdm.ScoreModel, "eps", tight)
    fresh._auto_rows["forward"] = 8
    assert torch.allclose(fresh.eps(x, 0.5, [0, 1, 0, 1, 0]), want, atol=1e-5)
    assert fresh._auto_rows["forward"] == 2 and calls[:2] == [5, 4] and max(calls[2:]) <= 2
    # a fixed value is honoured, and running out of memory with it says what to change
    monkeypatch.setenv(sdm.ENV_ROWS, "4")
    fixed = sdm.StableDiffusionScoreModel(model.pipe, model.prompts, shape=(4, 8, 8))
    assert fixed.rows_for("jvp") == fixed.rows_for("forward") == 4
    with pytest.raises(RuntimeError, match=sdm.ENV_ROWS):
        fixed.eps(x, 0.5)
    monkeypatch.setenv(sdm.ENV_ROWS, "many")
    with pytest.raises(ValueError, match="whole number"):
        sdm.StableDiffusionScoreModel(model.pipe, model.prompts)


def test_jvp_in_slices_of_heads_matches_the_plain_jvp(model):
    x, v = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    plain = model.eps_jvp(x, 0.3, v, [0, 1, None])
    sliced = sdm.StableDiffusionScoreModel(model.pipe, model.prompts, shape=(4, 8, 8), attention_slice=1)
    got = sliced.eps_jvp(x, 0.3, v, [0, 1, None])
    assert torch.allclose(got[0], plain[0], atol=1e-5) and torch.allclose(got[1], plain[1], atol=1e-5)


def test_jvps_and_full_precision_run_in_fp32_on_an_fp16_pipeline(pipe_dir):
    pipe = sdm.load_pipeline(pipe_dir, device="cpu", dtype="float16")
    m = sdm.StableDiffusionScoreModel(pipe, ["a red square"], shape=(4, 8, 8))
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    dtypes: list[torch.dtype] = []
    hook = pipe.unet.register_forward_pre_hook(lambda mod, args: dtypes.append(args[0].dtype))
    try:
        x, v = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
        out, jv = m.eps_jvp(x, 0.3, v, [0, None])
        assert dtypes == [torch.float32] and pipe.unet.dtype == torch.float16
        with m.full_precision():
            m.eps(x, 0.3, [0, None])
        m.eps(x, 0.3, [0, None])
        assert dtypes[1:] == [torch.float32, torch.float16]
    finally:
        hook.remove()
    after = pipe.unet.state_dict()  # fp16 -> fp32 -> fp16 leaves the weights bit for bit
    assert all(torch.equal(before[k], after[k]) for k in before)
    fd = (m.eps(x + 1e-2 * v, 0.3, [0, None]) - m.eps(x - 1e-2 * v, 0.3, [0, None])) / 2e-2
    assert torch.isfinite(jv).all() and (jv - fd).norm() / fd.norm() < 0.2  # fp16 forwards, loosely


def test_generation_check_and_hub_ids(tmp_path, pipe_dir):
    pipe = sdm.load_pipeline(pipe_dir, device="cpu")
    sdm.check_generation(pipe, None)
    with pytest.raises(sdm.ModelLoadError, match="not a sd1 checkpoint: cross_attention_dim 32"):
        sdm.check_generation(pipe, "sd1", "tiny")
    with pytest.raises(sdm.ModelLoadError, match="unknown Stable Diffusion generation"):
        sdm.check_generation(pipe, "sd3")
    # a task that needs SD 2 refuses other weights before generating anything
    spec_path = _spec(tmp_path / "task", pipe_dir, name="sd-needs-v2")
    spec_path.write_text(spec_path.read_text().replace("conditional = true", 'conditional = true\ngeneration = "sd2"'))
    with pytest.raises(BuildError, match="not a sd2 checkpoint.*prediction_type epsilon"):
        build_task(load_spec(spec_path), tmp_path / "cache", progress=False)
    for hub in ("stabilityai/stable-diffusion-2", "owner/sd-v1.5", "sd-v1.5"):
        assert sdm.source_kind(hub) == ("hub", hub)
    assert sdm.source_kind(pipe_dir) == ("folder", str(pipe_dir))
    for missing in ("/nonexistent/sd", "./weights", "~/sd", "a/b/c", "owner/../x", "weights.v1/"):
        with pytest.raises(sdm.ModelLoadError, match="does not exist"):
            sdm.source_kind(missing)


def test_fingerprint_ignores_config_keys_a_library_upgrade_adds(pipe_dir):
    pipe = sdm.load_pipeline(pipe_dir, device="cpu")
    fp = sdm.fingerprint(pipe)
    pipe.unet.register_to_config(option_added_by_a_newer_diffusers=True)
    pipe.text_encoder.config.option_added_by_a_newer_transformers = 1
    assert sdm.fingerprint(pipe) == fp
    with torch.no_grad():
        p = next(iter(sorted(pipe.unet.state_dict().items())))[1]
        p.add_(1.0)
    try:
        assert sdm.fingerprint(pipe) != fp  # the weights themselves are still named
    finally:
        with torch.no_grad():
            p.sub_(1.0)


def test_flipd_grid_on_sd_reaches_the_same_signal_fraction_without_repeats(model):
    from mmh_bench.api.score_model import vp_linear_alpha_bar
    from mmh_bench_baselines.flipd import FLIPD
    det = FLIPD()
    assert np.array_equal(det.t_grid(), np.geomspace(1e-3, 0.44, 18))  # continuous models: unchanged
    grid = det.t_grid(model)
    ks = model.timesteps(torch.as_tensor(grid)).numpy()
    assert len(set(ks.tolist())) == len(grid) <= 18 and np.all(np.diff(ks) > 0)
    target = float(vp_linear_alpha_bar(torch.tensor(0.44)))
    ab = model.pipe.scheduler.alphas_cumprod
    assert ks[0] == 0 and float(ab[ks[-1]]) <= target < float(ab[ks[-1] - 1])  # timestep 624, not 439
    assert ks[-1] == 624


# -- issue 24: the published protocols (Webster's sigma_max, Ren's LE layer, Jeon's shared x_T) ----------
@pytest.fixture(scope="module")
def shared_task(tmp_path_factory, pipe_dir):
    """The tiny task built with Jeon et al.'s shared x_T, two generations per prompt."""
    folder = tmp_path_factory.mktemp("shared")
    path = _spec(folder / "task", pipe_dir, name="sd-tiny-shared", gens=2)
    path.write_text(path.read_text().replace('scheduler = "DDIM"\n', 'scheduler = "DDIM"\ninitial_noise = "shared"\n'))
    spec = load_spec(path)
    return build_task(spec, folder / "cache", progress=False)


def test_shared_seed_gives_every_prompt_the_same_x_T(shared_task, tmp_path, pipe_dir):
    """Jeon et al. call set_seed(42) before every prompt: generation j of every prompt starts from
    one x_T. The default draws one per generation; the mode is recorded in the instance."""
    inst = shared_task
    gen = inst.arrays["generation"]
    assert inst.meta["sampling"]["initial_noise"] == "shared"
    for j in (0, 1):
        rows = np.flatnonzero(gen == j)
        assert len(rows) == 6 and all(np.array_equal(inst.noise[r], inst.noise[rows[0]]) for r in rows)
    assert not np.allclose(inst.noise[gen == 0][0], inst.noise[gen == 1][0])
    # the same x_T, different prompts: different latents
    assert len({inst.samples[r].tobytes() for r in np.flatnonzero(gen == 0)}) == 6
    per_row = build_task(load_spec(_spec(tmp_path / "task", pipe_dir, gens=2)), tmp_path / "cache", progress=False)
    assert per_row.meta["sampling"]["initial_noise"] == "per-generation"
    first = per_row.noise[per_row.arrays["generation"] == 0]
    assert len({x.tobytes() for x in first}) == 6  # one x_T per prompt
    assert any(np.array_equal(x, inst.noise[gen == 0][0]) for x in first)  # the shared one is one of them
    bad = _spec(tmp_path / "bad", pipe_dir, name="sd-tiny-bad")
    bad.write_text(bad.read_text().replace('scheduler = "DDIM"\n', 'scheduler = "DDIM"\ninitial_noise = "jeon"\n'))
    with pytest.raises(Exception, match="initial_noise"):
        build_task(load_spec(bad), tmp_path / "cache", progress=False)
    assert get_task("sd-v1-4-jeon").model.sampling.initial_noise == "shared"


def test_one_step_dcs_is_webster_one_step_from_sigma_max(shared_task):
    """Known answer, computed as the authors' k-diffusion sampler does, straight on the diffusers
    UNet: x = sigma_max z with sigma_max = sqrt((1 - a) / a) at timestep 999, the UNet fed
    x / sqrt(sigma_max^2 + 1), one Euler step to the guided denoised D(x), score mean((x - D(x))^2)."""
    inst = shared_task
    scores, cost = compute_scores(make_detector("one-step-dcs"), inst, seed=0)
    assert cost["nfe_per_sample"] == 2
    pipe = sdm.load_pipeline(str(inst.meta["model"]["source"]), device="cpu")
    a = torch.as_tensor(pipe.scheduler.alphas_cumprod, dtype=torch.float64)[999]
    sigma = ((1 - a) / a).sqrt()
    prompts = [str(inst.arrays["prompts"][c]) for c in inst.cond]
    with torch.no_grad():
        text, empty = pipe.encode_prompt(prompts, "cpu", 1, True, [""] * len(prompts))
        x = sigma * torch.as_tensor(inst.noise, dtype=torch.float64)
        unet_in = (x / (sigma ** 2 + 1).sqrt()).float()
        e_c = pipe.unet(unet_in, 999, encoder_hidden_states=text).sample.double()
        e_u = pipe.unet(unet_in, 999, encoder_hidden_states=empty).sample.double()
        denoised = x - sigma * (e_u + 7.5 * (e_c - e_u))
        expected = ((x - denoised) ** 2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    ddim, _ = compute_scores(make_detector('one-step-dcs(start="ddim")'), inst, seed=0)
    assert not np.allclose(ddim, scores, rtol=1e-3)  # the DDIM first step (981, x_T unscaled) is another number
    with pytest.raises(Exception, match="one step from sigma_max"):
        make_detector("one-step-dcs(n_steps=2)")
    make_detector('one-step-dcs(start="ddim", n_steps=2)')


def test_attention_entropy_default_is_ren_le_layer_3(shared_task):
    """The bare detector is Ren et al.'s LE (layer 3, the tiny UNet's last of four); the all-layer
    mean is a parameter away and a different number; a layer the model lacks is not applicable."""
    from mmh_bench.evaluation.detection import DetectionTrack
    inst = shared_task
    default, _ = compute_scores(make_detector("attention-entropy"), inst, seed=0)
    layer3, _ = compute_scores(make_detector("attention-entropy(layer=3)"), inst, seed=0)
    mean, _ = compute_scores(make_detector("attention-entropy(layer=null)"), inst, seed=0)
    np.testing.assert_array_equal(default, layer3)
    assert not np.allclose(default, mean)
    assert inst.score_model().cross_attention_layers == 4
    why = DetectionTrack().why_not(make_detector("attention-entropy(layer=4)"), inst)
    assert why and "layer 4" in why and "has 4" in why
