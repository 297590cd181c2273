"""Stable Diffusion on the mitigation track, on tiny local models: MemBench's scores on known answers.

A tiny SD pipeline (``sd_tiny``) builds a task of three memorized and two other prompts; a tiny
TorchScript conv net stands in for SSCD (loaded through the sha256-checked loader) and a tiny
random ``CLIPModel`` for CLIP. The ground truth is written from the task's own decoded
generations, so the copy similarities have known answers: a generation whose image is its
prompt's ground truth scores 1.0. Nothing is downloaded.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from mmh_bench.cli.main import main  # noqa: E402
from mmh_bench.files import sha256_file  # noqa: E402
from mmh_bench.mitigation.evaluate import MitigationTrack, run_mitigator  # noqa: E402
from mmh_bench.mitigation.ground_truth import GroundTruthError, load_ground_truth, read_image  # noqa: E402
from mmh_bench.mitigation.membench import (clip_scores, copies, decode_latents, load_clip, load_sscd,  # noqa: E402
                                           max_sscd)
from mmh_bench.mitigation.result import read_mitigation_result  # noqa: E402
from mmh_bench.mitigation.sd import MemBenchJudge  # noqa: E402
from mmh_bench.registry import all_mitigators, make_mitigator  # noqa: E402
from mmh_bench.task.build import build_task  # noqa: E402
from mmh_bench.task.sampler import generate  # noqa: E402
from mmh_bench.task.spec import load_spec  # noqa: E402
from mmh_bench.threads import limited_threads  # noqa: E402

from sd_tiny import TOKENS, build_tiny_pipeline, write_task_spec, write_tokenizer  # noqa: E402

MEMORIZED = ["the no limits podcast", 'a "quoted", template shirt', "living room rug"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with limited_threads(1):
        yield


def _task_spec(folder: Path, pipe: Path) -> Path:
    """Three memorized prompts (VM, TM, TM) and two others, two generations each."""
    rows = "".join(f'{i};"{p.replace(chr(34), chr(34) * 2)}";u;{t};0.5;0.6;{i}\n'
                   for i, (p, t) in enumerate(zip(MEMORIZED, ["VM", "TM", "TM"])))
    return write_task_spec(folder, pipe, name="sd-mit", gens=2, seed=5,
                           positives=";Caption;URL;type;mean_sscd;max_sscd;Index\n" + rows,
                           negatives="a dog on a beach\na bowl of fruit")


class _Conv(torch.nn.Module):
    """The SSCD stand-in: a random conv net from 288 x 288 RGB to 128 numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=16, stride=16)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x)).flatten(1)


def _tiny_clip(folder: Path) -> Path:
    """A random CLIPModel and its processor (character-level tokenizer, 32 px images), saved."""
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(write_tokenizer(folder.parent / "clip-tokenizer"))
    vocab = tok.get_vocab()
    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    cfg = CLIPConfig(text_config={**small, "vocab_size": len(vocab), "max_position_embeddings": TOKENS,
                                  "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
                                  "pad_token_id": vocab["<|endoftext|>"]},
                     vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=16)
    CLIPModel(cfg).save_pretrained(folder)
    # the Pillow image processor where transformers has one (its default needs torchvision)
    pil = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    images = pil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    return folder


def _write_ground_truth(folder: Path, entries: list[tuple[str, object]]) -> Path:
    """``entries`` (prompt, PIL image) as PNG files and a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "manifest.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["prompt", "image"])
        for i, (prompt, image) in enumerate(entries):
            image.save(folder / f"{i}.png")
            out.writerow([prompt, f"{i}.png"])
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SimpleNamespace:
    """The tiny task, the SSCD and CLIP stand-ins, and ground truth = each memorized prompt's
    first stored generation, decoded."""
    root = tmp_path_factory.mktemp("sd-mitigation")
    torch.manual_seed(0)
    pipe_dir = build_tiny_pipeline(root / "tiny-sd")
    spec = _task_spec(root / "task", pipe_dir)
    inst = build_task(load_spec(spec), root / "cache", progress=False)
    sscd = root / "sscd.torchscript.pt"
    torch.jit.script(_Conv().eval()).save(str(sscd))
    clip = _tiny_clip(root / "clip")
    prompts = inst.arrays["prompts"]
    first = {}
    for r in np.flatnonzero(inst.labels == 1):
        first.setdefault(str(prompts[inst.cond[r]]), r)
    rows = np.array(sorted(first.values()))
    images = next(decode_latents(inst.score_model().pipe, inst.samples[rows], batch_size=len(rows)))
    gt = _write_ground_truth(root / "gt", [(str(prompts[inst.cond[r]]), im) for r, im in zip(rows, images)])
    return SimpleNamespace(root=root, pipe_dir=pipe_dir, spec=spec, inst=inst, sscd=sscd,
                           sscd_sha=sha256_file(sscd), clip=clip, gt=gt)


def _judge(w: SimpleNamespace, gt: Path | None = None, partial: bool = False) -> MemBenchJudge:
    return MemBenchJudge(load_ground_truth(gt or w.gt), load_sscd(w.sscd, w.sscd_sha, device="cpu"),
                         load_clip(w.clip, device="cpu"), partial=partial)


# -- the metrics on hand-made embeddings ----------------------------------------------------------
def test_max_sscd_compares_each_generation_with_its_own_prompts_ground_truth():
    e1, e2, e3 = np.eye(3, dtype=np.float32)
    gen, gen_ids = np.stack([e1, e2, 5 * e1]), np.array([0, 0, 1])
    gt, gt_ids = np.stack([2 * e1, e2 + e3]), np.array([0, 1])
    sim = max_sscd(gen, gt, gt_ids, gen_ids)
    # generation 2 equals prompt 0's ground truth, but prompt 1's is all that counts for it
    np.testing.assert_allclose(sim, [1.0, 0.0, 0.0], atol=1e-6)
    assert copies(sim).tolist() == [True, False, False]
    assert copies(np.array([0.5, 0.51])).tolist() == [False, True]  # strictly above MemBench's 0.5
    with pytest.raises(ValueError, match=r"prompt id\(s\) \[2\]"):
        max_sscd(gen, gt, gt_ids, np.array([0, 0, 2]))


def test_clip_score_is_100_cos_clipped_at_zero():
    img = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    txt = np.array([[1.0, 1.0], [-1.0, 0.0], [6.0, 8.0]])
    np.testing.assert_allclose(clip_scores(img, txt), [100 / np.sqrt(2), 0.0, 100.0], atol=1e-4)
    with pytest.raises(ValueError, match="row by row"):
        clip_scores(img, txt[:2])


# -- the ground-truth folder ----------------------------------------------------------------------
def test_ground_truth_folder_errors_name_the_problem(tmp_path):
    from PIL import Image
    with pytest.raises(GroundTruthError, match="does not exist"):
        load_ground_truth(tmp_path / "nowhere")
    (tmp_path / "gt").mkdir()
    with pytest.raises(GroundTruthError, match="no manifest.csv"):
        load_ground_truth(tmp_path / "gt")
    (tmp_path / "gt" / "manifest.csv").write_text("caption,file\nx,a.png\n")
    with pytest.raises(GroundTruthError, match="header must name"):
        load_ground_truth(tmp_path / "gt")
    (tmp_path / "gt" / "manifest.csv").write_text("prompt,image\na cat,a.png\n")
    with pytest.raises(GroundTruthError, match=r"line 2: image 'a.png' not found"):
        load_ground_truth(tmp_path / "gt")
    (tmp_path / "gt" / "a.png").write_bytes(b"not an image")
    with pytest.raises(GroundTruthError, match="cannot read ground-truth image"):
        read_image(load_ground_truth(tmp_path / "gt").images["a cat"][0])
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "gt" / "a.png")
    gt = load_ground_truth(tmp_path / "gt")
    assert read_image(gt.images["a cat"][0]).getpixel((0, 0)) == (255, 0, 0) and len(gt.sha256) == 64
    with pytest.raises(GroundTruthError, match=r"2 of 3 memorized prompts .*'a dog'"):
        gt.covering(["a cat", "a dog", "a cow"])
    assert gt.covering(["a cat", "a dog"], partial=True) == ["a cat"]
    with pytest.raises(GroundTruthError, match="none of the task.s 1 memorized prompts"):
        gt.covering(["a dog"], partial=True)


# -- the SD model's capabilities and the replay -----------------------------------------------------
def test_sd_model_offers_what_the_shipped_mitigators_need(world):
    model = world.inst.score_model()
    x, t, cond = torch.randn(2, 4, 8, 8), 0.5, [0, 1]
    emb = model.condition_embedding(cond)
    assert emb.shape == (2, TOKENS, 32) and emb.dtype == torch.float32
    np.testing.assert_allclose(model.eps_embedded(x, t, emb, cond).numpy(), model.eps(x, t, cond).numpy(), atol=1e-5)
    e = emb.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.eps_embedded(x, t, e, cond).pow(2).sum(), e)
    assert g.abs().sum() > 0  # the embedding optimisers' gradient reaches the prompt embedding
    plain = model.eps(x, t, cond)
    with model.rescaled_attention(1.0):
        np.testing.assert_allclose(model.eps(x, t, cond).numpy(), plain.numpy(), atol=1e-5)
    with model.rescaled_attention(1.5):
        assert not np.allclose(model.eps(x, t, cond).numpy(), plain.numpy(), atol=1e-4)
    np.testing.assert_array_equal(model.eps(x, t, cond).numpy(), plain.numpy())  # restored after the block
    assert model.captions == world.inst.arrays["prompts"].tolist()
    judge = _judge(world)
    for name in all_mitigators():
        assert MitigationTrack(judge=judge).why_not(make_mitigator(name), world.inst) is None, name
    why = MitigationTrack().why_not(make_mitigator("none"), world.inst)
    assert why and "--ground-truth" in why


def test_none_regenerates_the_stored_latents(world):
    scored = _judge(world).scored(world.inst)
    assert len(scored.samples) == 6 and scored.labels.all()  # the memorized prompts' generations
    samples, cost = run_mitigator(make_mitigator("none"), scored)
    # to float rounding: the pipeline batched the guidance branches, and guidance 7.5 amplifies it
    np.testing.assert_allclose(samples, scored.samples, rtol=0, atol=1e-4)
    assert cost["nfe_per_sample"] == 6  # 3 steps, both branches of guidance
    # the pipeline's DDIM ends one step short of x0; a replay ending at x0 would not match
    at_x0 = dataclasses.replace(scored.sampler(), final_alpha_bar=None)
    x0 = generate(scored.score_model(), scored.noise, at_x0, scored.cond.tolist(), progress=False)
    assert np.abs(x0 - scored.samples).max() > 1e-3


# -- MemBench's scores ----------------------------------------------------------------------------
def test_membench_scores_on_known_ground_truth(world):
    judge = _judge(world)
    scored = judge.scored(world.inst)
    m = judge.metrics(scored, scored.samples)
    mb = m["membench"]
    # each prompt's first generation is its ground truth: similarity 1, a copy
    assert mb["n_prompts"] == 3 and mb["sscd_prompt_max_mean"] == pytest.approx(1.0, abs=1e-5)
    assert m["memorization"]["rate"] == mb["sscd_above_share"] >= 0.5
    assert m["unchanged_share"] == 1.0 and set(m["per_subtype"]) == {"VM", "TM"}
    assert sum(r["rate"] for r in m["per_subtype"].values()) == pytest.approx(m["memorization"]["rate"])
    images = [im for batch in decode_latents(scored.score_model().pipe, scored.samples) for im in batch]
    prompts = [str(scored.arrays["prompts"][c]) for c in scored.cond]
    clip = judge.clip
    expect = clip_scores(clip.image_features(images), clip.text_features(prompts)).mean()
    assert mb["clip_score"] == pytest.approx(expect, abs=1e-4)
    assert mb["ground_truth_sha256"] == judge.ground_truth.sha256 and mb["sscd_model"].startswith("torchscript:")


def test_missing_ground_truth_prompts_are_a_clear_error(world, tmp_path):
    one = _write_ground_truth(tmp_path / "gt", [(MEMORIZED[0], read_image(world.gt / "0.png"))])
    with pytest.raises(GroundTruthError, match="2 of 3 memorized prompts have no ground-truth image"):
        _judge(world, one).scored(world.inst)
    judge = _judge(world, one, partial=True)
    scored = judge.scored(world.inst)
    assert {str(scored.arrays["prompts"][c]) for c in scored.cond} == {MEMORIZED[0]}
    mb = judge.metrics(scored, scored.samples)["membench"]
    assert mb["n_prompts"] == 1 and mb["n_prompts_without_ground_truth"] == 2


# -- the command line -------------------------------------------------------------------------------
def test_cli_mitigate_on_a_tiny_sd_task(world, tmp_path, capsys):
    args = ["mitigate", "--tasks", str(world.spec), "--model", str(world.pipe_dir), "--instances", "none",
            "--cache", str(world.root / "cache"), "--results", str(tmp_path / "res"), "--out", str(tmp_path / "out"),
            "--mitigators", ",".join(sorted(all_mitigators())), "--no-sweep", "--batch-size", "4",
            "--ground-truth", str(world.gt), "--sscd", str(world.sscd), "--sscd-sha256", world.sscd_sha,
            "--clip", str(world.clip), "-q"]
    assert main(args) == 0, capsys.readouterr()
    docs = {d.mitigator: d for d in (read_mitigation_result(p) for p in (tmp_path / "res").rglob("*.json"))}
    assert set(docs) == set(all_mitigators()) and all(d.status == "ok" for d in docs.values())
    none = docs["none"]
    assert none.n_samples == 6 and none.metrics.unchanged_share == 1.0
    assert none.metrics.membench.sscd_prompt_max_mean == pytest.approx(1.0, abs=1e-3)
    assert none.metrics.memorization == none.unmitigated.memorization
    assert none.unmitigated.membench.clip_score == pytest.approx(none.metrics.membench.clip_score, abs=1e-3)
    for d in docs.values():
        assert d.metrics.memorization.rate == d.metrics.membench.sscd_above_share
    assert docs["guidance"].metrics.unchanged_share < 1.0
    text = (tmp_path / "out" / "MITIGATION.md").read_text()
    assert "CLIP score" in text and "VM / TM" in text and "MemBench's protocol" in text
    capsys.readouterr()
    assert main(args) == 0  # every result current: nothing reruns
    assert f"0 ran, {len(docs)} current" in capsys.readouterr().out
    bad = [str(tmp_path / "nowhere") if a == str(world.gt) else a for a in args]
    assert main(bad) == 2 and "does not exist" in capsys.readouterr().err
    assert main([*args[:args.index("--ground-truth")], "-q"]) == 0  # no judge: said, not built or run
    said = capsys.readouterr().out  # each mitigator, as for detectors
    assert all(f"not applicable: sd-mit / {name}: Stable Diffusion generations are scored" in said
               for name in all_mitigators()), said
