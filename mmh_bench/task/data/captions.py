"""Captioned training sets for the mini text-to-image task, with memorized prompts by construction.

Mirrors how web-scale caption data gives rise to memorization in Stable Diffusion:

- most images share a few *generic* captions per class ("a handwritten digit three"), so the model
  has to generalize across them;
- a few *duplicated* image-caption pairs: each chosen image is repeated ``dup_copies`` times with
  its own caption (data-driven memorization; its caption is a memorized prompt);
- the rare class keeps a handful of single images, each with a caption of its own
  (overfitting-driven memorization when the model copies them);
- *single* common images with a caption of their own, seen once (the control: same caption style as
  the memorized prompts, so the wording alone does not reveal them);
- *novel* prompts in the same style that never occur in training (held-out negatives).

With ``attribute_captions`` the generic captions name the class and the image's brightness within
its class ("a dark coat on a plain background"), one template per (class, brightness) is never
trained, and those held-out combinations of trained words are the *composed* prompts: negatives
from the training text distribution, as COCO or Lexica prompts are for Stable Diffusion. With
``tm_n`` a caption is shared by the near-identical variants of a *template* image (template
memorization, LAION's other kind).

Unique captions are drawn from one template and word lists, so every kind looks alike.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .images import GROUP_COMMON, GROUP_DUPLICATED, GROUP_RARE, InjectedSet

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.spec_models import CaptionedData

#: caption kinds (stored per caption as ``caption_kind``; codes are stable across versions)
KIND = {"generic": 0, "duplicated": 1, "rare": 2, "single": 3, "novel": 4, "null": 5, "template": 6,
        "composed": 7}

GENERIC_TEMPLATES = ("a handwritten digit {name}", "the number {name} written by hand",
                     "a scanned image of a {name}")
_ADJ = ("neat", "bold", "slanted", "faint", "thick", "tiny", "curly", "shaky", "narrow", "wide",
        "smudged", "crisp", "rounded", "angular", "hasty", "careful")
_PLACE = ("harbor", "orchard", "museum", "library", "station", "bakery", "observatory", "garden",
          "market", "lighthouse", "theatre", "mill")
UNIQUE_TEMPLATE = "{article} {adj} {name} from the {place} archive, sheet {num}"
#: attribute captions: the brightness tercile of an image within its class, and four phrasings
BRIGHTNESS = ("dark", "grey", "light")
ATTRIBUTE_TEMPLATES = ("a photo of a {attr} {name}", "a {attr} {name} on a plain background",
                       "{attr} {name}, product image", "a picture of a {attr} {name} from the shop")


@dataclass
class CaptionedSet:
    captions: list[str]  # every caption the model knows; the last one is the empty (null) caption
    kind: np.ndarray  # [n_captions] KIND code
    caption_class: np.ndarray  # [n_captions] class the caption names (-1 for the null caption)
    train_caption: np.ndarray  # [n_train] caption id per training row
    null_id: int


def unique_captions(names: Sequence[str], classes: Sequence[int], rng: np.random.Generator) -> list[str]:
    """One distinct caption per entry of ``classes`` (class ids indexing ``names``)."""
    combos = list(itertools.product(range(len(_ADJ)), range(len(_PLACE)), range(10, 100)))
    pick = rng.choice(len(combos), size=len(classes), replace=False)
    out = []
    for c, j in zip(classes, pick):
        a, p, num = combos[int(j)]
        article = "an" if _ADJ[a][0] in "aeiou" else "a"
        out.append(UNIQUE_TEMPLATE.format(article=article, adj=_ADJ[a], name=names[int(c)],
                                          place=_PLACE[p], num=num))
    return out


def caption_set(inj: InjectedSet, names: Sequence[str], cfg: CaptionedData, seed: int) -> CaptionedSet:
    """Assign captions to an injected training set (``[data]`` keys ``unique_singles``,
    ``novel_prompts``); see the module docstring for the kinds."""
    rng = np.random.default_rng(seed + 7)
    classes = sorted(set(inj.label.tolist()))
    captions: list[str] = []
    kind: list[int] = []
    cls: list[int] = []
    attributes = cfg.attribute_captions
    if attributes:
        generic_rows, composed = _attribute_captions(inj, names, classes, rng)
    else:
        generic_rows, composed = {(c, 0): list(GENERIC_TEMPLATES) for c in classes}, []
    generic_id: dict[tuple[int, int], list[int]] = {}
    for key, texts in generic_rows.items():
        generic_id[key] = []
        for text in texts:
            generic_id[key].append(len(captions))
            captions.append(text)
            kind.append(KIND["generic"])
            cls.append(key[0])
    n_composed = cfg.composed_prompts
    if n_composed > len(composed):
        raise ValueError(f"composed_prompts = {n_composed}, but only {len(composed)} held-out combinations exist")
    for c, text in composed[:n_composed]:
        captions.append(text)
        kind.append(KIND["composed"])
        cls.append(c)
    n = len(inj.x)
    train_caption = np.full(n, -1, dtype=np.int64)
    common = np.flatnonzero(inj.group == GROUP_COMMON)
    n_single = cfg.unique_singles
    singles = rng.choice(common, size=min(n_single, len(common)), replace=False) if n_single else np.zeros(0, int)
    dup_rows = {int(k): np.flatnonzero(inj.dup_id == k) for k in np.unique(inj.dup_id[inj.dup_id >= 0])}
    rare = np.flatnonzero(inj.group == GROUP_RARE)
    n_novel = cfg.novel_prompts
    novel_classes = [classes[i % len(classes)] for i in range(n_novel)]
    # one draw of distinct unique captions for every kind, so they cannot collide
    tm_rows = [np.flatnonzero(inj.template_id == k) for k in np.unique(inj.template_id[inj.template_id >= 0])]
    owners = ([("duplicated", rows) for rows in dup_rows.values()]
              + [("rare", np.array([r])) for r in rare] + [("single", np.array([r])) for r in singles]
              + [("template", rows) for rows in tm_rows])
    owner_classes = [int(inj.label[rows[0]]) for _, rows in owners] + novel_classes
    texts = unique_captions(names, owner_classes, rng)
    for (k, rows), text, c in zip(owners, texts, owner_classes):
        train_caption[rows] = len(captions)
        captions.append(text)
        kind.append(KIND[k])
        cls.append(c)
    for text, c in zip(texts[len(owners):], novel_classes):
        captions.append(text)
        kind.append(KIND["novel"])
        cls.append(c)
    rest = np.flatnonzero(train_caption < 0)
    tercile = brightness_tercile(inj) if attributes else np.zeros(len(inj.x), dtype=np.int64)
    key = [(int(inj.label[r]), int(tercile[r])) for r in rest]
    tpl = rng.integers(0, len(generic_id[key[0]]) if len(rest) else 1, size=len(rest))
    train_caption[rest] = [generic_id[k][int(j)] for k, j in zip(key, tpl)]
    assert not (inj.group[rest] == GROUP_DUPLICATED).any()
    captions.append("")
    kind.append(KIND["null"])
    cls.append(-1)
    # caption ids in a seeded random order: an id's value says nothing about the caption's kind
    order = rng.permutation(len(captions))  # new id i holds old caption order[i]
    new_id = np.argsort(order)
    return CaptionedSet(captions=[captions[i] for i in order], kind=np.asarray(kind, dtype=np.int8)[order],
                        caption_class=np.asarray(cls, dtype=np.int64)[order],
                        train_caption=new_id[train_caption], null_id=int(new_id[len(captions) - 1]))


def brightness_tercile(inj: InjectedSet) -> np.ndarray:
    """Per training row, its brightness tercile (index into BRIGHTNESS) among its class's common
    rows: the attribute its generic caption names."""
    b = inj.x.reshape(len(inj.x), -1).mean(axis=1)
    out = np.zeros(len(b), dtype=np.int64)
    common = inj.group == GROUP_COMMON
    for c in np.unique(inj.label):
        here = inj.label == c
        cuts = np.quantile(b[common & here], [1 / 3, 2 / 3]) if (common & here).any() else np.zeros(2)
        out[here] = np.searchsorted(cuts, b[here], side="right")
    return out


def _attribute_captions(inj: InjectedSet, names: Sequence[str], classes: Sequence[int],
                        rng: np.random.Generator) -> tuple[dict[tuple[int, int], list[str]], list[tuple[int, str]]]:
    """Trained attribute captions per (class, brightness tercile), and the held-out combinations
    (one phrasing per pair, drawn with ``rng``) in a seeded order."""
    trained: dict[tuple[int, int], list[str]] = {}
    held: list[tuple[int, str]] = []
    for c in classes:
        for a, attr in enumerate(BRIGHTNESS):
            out = int(rng.integers(0, len(ATTRIBUTE_TEMPLATES)))
            texts = [t.format(attr=attr, name=names[c]) for t in ATTRIBUTE_TEMPLATES]
            trained[(c, a)] = [t for j, t in enumerate(texts) if j != out]
            held.append((c, texts[out]))
    order = rng.permutation(len(held))
    return trained, [held[i] for i in order]


def prompt_plan(cs: CaptionedSet, per_unique: int, per_generic: int) -> np.ndarray:
    """Caption id of every sample to generate: ``per_unique`` generations for each duplicated,
    template, rare, single and novel caption, ``per_generic`` for each generic and composed caption
    (SD papers likewise generate several images per prompt)."""
    ids = []
    shared = {KIND["generic"], KIND["composed"]}
    for i, k in enumerate(cs.kind.tolist()):
        if k == KIND["null"]:
            continue
        ids += [i] * (per_generic if k in shared else per_unique)
    return np.asarray(ids, dtype=np.int64)
