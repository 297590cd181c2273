"""Retrieval at scale, checked at small scale: planted duplicate groups, index choice, persistence,
approximate recall in the copy regime, batching, embedders and the dedup CLI."""
import json

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import pdist, squareform

from mmh_bench.retrieval import neardup
from mmh_bench.cli.main import main
from mmh_bench.retrieval.neardup import _renumber_first, find_duplicates, group_diameters
from mmh_bench.retrieval.train_index import TrainIndex, duplicate_groups, label_copies
from mmh_bench.retrieval.synthetic_vectors import (clustered_vectors, plant_groups, random_vectors,
                                         score_groups)
from mmh_bench.retrieval.vector_index import (IndexFileError, VectorIndex, choose_kind, cosine_to_distance,
                                    normalize_rows, sidecar_path)

SIZES = [2] * 6 + [3] * 4 + [5, 8, 20, 60, 200]


def _copy_queries(x, n, radius_frac=1 / 3, seed=0):
    """Rows moved by up to radius_frac of their nearest-neighbour distance (the copy regime)."""
    rng = np.random.default_rng(seed)
    src = rng.choice(len(x), n, replace=False)
    d, _ = VectorIndex.build(x, kind="flat").search(x[src], 2)
    u = rng.standard_normal((n, x.shape[1]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = rng.uniform(0, radius_frac, n) * d[:, 1]
    return (x[src] + u * r[:, None]).astype(np.float32), src


@pytest.mark.parametrize("n, dim, gen", [(3000, 32, "random"), (12000, 48, "clustered"),
                                         (12000, 48, "random")])
def test_planted_groups_found_without_false_merges(n, dim, gen):
    x = random_vectors(n, dim, seed=1) if gen == "random" else clustered_vectors(n, dim, 40, 0.5, seed=1)
    nn = VectorIndex.build(x, kind="flat").search(x[:100], 2)[0][:, 1]
    t = 0.2 * float(np.median(nn))
    planted = plant_groups(x, SIZES, t, seed=2)
    res = find_duplicates(x, t)
    score = score_groups(res.group_of_row, planted)
    assert score["all_found"] and score["found"] == len(SIZES), score
    assert score["false_merges"] == 0 and score["extra_groups"] == 0
    assert res.stats["method"] == ("all-pairs" if n <= neardup.DEDUP_BRUTE_MAX else "ivf-cells")
    # every found group stays within the threshold (no chaining in planted data)
    assert (group_diameters(x, res.groups) <= t * (1 + 1e-6)).all()


def test_cell_search_is_exact_against_all_pairs(monkeypatch):
    """Uncapped bisector probing gives exactly the components of the full d <= T graph."""
    x = clustered_vectors(6000, 16, n_clusters=50, spread=0.3, seed=3)
    t = 0.9
    ref = _renumber_first(connected_components(squareform(pdist(x.astype(np.float64))) <= t,
                                               directed=False)[1])
    exact = find_duplicates(x, t, max_probe=None)
    assert exact.stats["method"] == "ivf-cells" and exact.stats["certified_fraction"] == 1.0
    assert np.array_equal(exact.group_of_row, ref)
    assert len(exact.groups) > 20  # the case has real near-duplicate structure
    monkeypatch.setattr(neardup, "DEDUP_BRUTE_MAX", 10**6)
    assert np.array_equal(find_duplicates(x, t).group_of_row, ref)


def test_single_linkage_chains_and_complete_linkage_splits():
    t = 1.0
    line = np.zeros((6, 3), dtype=np.float32)
    line[:, 0] = np.arange(6) * 0.9  # neighbours 0.9 apart: one chain, ends 4.5 apart
    far = np.array([[50.0, 0, 0], [50.0, 1.1, 0]], dtype=np.float32)  # 1.1 apart: never merged
    x = np.concatenate([line, far])
    single = find_duplicates(x, t)
    assert [g.tolist() for g in single.groups] == [[0, 1, 2, 3, 4, 5]]
    assert group_diameters(x, single.groups)[0] == pytest.approx(4.5)
    complete = find_duplicates(x, t, linkage="complete")
    assert all(d <= t for d in group_diameters(x, complete.groups))
    assert [g.tolist() for g in complete.groups] == [[0, 1], [2, 3], [4, 5]]


def test_exact_duplicates_with_large_norms_and_signed_zero():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 64)) * 1e4).astype(np.float32)
    x[10] = x[3]
    x[20] = x[3]
    x[0, 0] = 0.0
    x[30] = x[0]
    x[30, 0] = -0.0
    g = duplicate_groups(x, 0.0)
    assert g[10] == g[3] == g[20] and g[30] == g[0] and g.max() + 1 == 50 - 3


def test_index_choice_rule_and_override():
    assert choose_kind(1000) == "flat" and choose_kind(10**6) == "ivf"
    assert choose_kind(5000, exact_max=1000) == "ivf"
    x = random_vectors(3000, 16, seed=0)
    assert VectorIndex.build(x).kind == "flat"
    assert VectorIndex.build(x, exact_max=1000).kind == "ivf"
    assert VectorIndex.build(x, kind="ivf", probe=3).probe == 3


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_save_load_round_trip_and_corruption(tmp_path, kind):
    x = clustered_vectors(4000, 32, 30, seed=4)
    q = x[:50] + 0.01
    idx = VectorIndex.build(x, kind=kind, embedding="unit-test-emb", metric="l2")
    path = idx.save(tmp_path / "train.faiss")
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["embedding"] == "unit-test-emb" and meta["metric"] == "l2" and meta["dim"] == 32
    assert meta["ntotal"] == 4000 and len(meta["sha256"]) == 64 and meta["kind"] == kind
    d0, i0 = idx.search(q, 3)
    for mmap in (False, True):
        back = VectorIndex.load(path, embedding="unit-test-emb", mmap=mmap)
        assert back.kind == kind and back.probe == idx.probe
        d1, i1 = back.search(q, 3)
        assert np.array_equal(i0, i1) and np.allclose(d0, d1, atol=1e-4)
    with pytest.raises(IndexFileError, match="built with embedding"):
        VectorIndex.load(path, embedding="clip")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexFileError, match="checksum mismatch"):
        VectorIndex.load(path)
    sidecar_path(path).unlink()
    with pytest.raises(IndexFileError, match="sidecar"):
        VectorIndex.load(path)
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "missing.faiss")


def test_train_index_save_load_keeps_groups(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 8)).astype(np.float32)
    train = np.concatenate([base, np.repeat(base[:1], 4, axis=0)])
    ti = TrainIndex(train, dedup_tol=1e-4, embedding="pixels")
    ti.save(tmp_path / "t.faiss")
    back = TrainIndex.load(tmp_path / "t.faiss", embedding="pixels")
    assert len(back) == 200 and back.group_size[0] == 5
    assert np.array_equal(back.rep_row, ti.rep_row) and np.allclose(back.data, ti.data)
    lab = label_copies(base[:1] + 1e-3, back, abs_tol=0.1)
    assert lab.memorized[0] and lab.copied_row[0] == 0 and lab.group_size[0] == 5
    groups = tmp_path / "t.faiss.groups.npy"
    np.save(groups, np.zeros(204, dtype=np.int64))
    with pytest.raises(IndexFileError, match="checksum"):
        TrainIndex.load(tmp_path / "t.faiss")


@pytest.mark.parametrize("kind", ["ivf", "hnsw", "ivfpq"])
def test_approximate_recall_in_copy_regime(kind):
    x = clustered_vectors(20000, 64, 100, 0.5, seed=5)
    q, src = _copy_queries(x, 400, seed=6)
    exact = VectorIndex.build(x, kind="flat").search(q, 1)[1][:, 0]
    assert (exact == src).mean() > 0.99  # the queries are copies of their source rows
    idx = VectorIndex.build(x, kind=kind, seed=0)
    assert idx.calibration["chosen"] == idx.probe and idx.calibration["recall"]
    got = idx.search(q, 1)[1][:, 0]
    assert (got == exact).mean() >= 0.99


def test_label_copies_with_approximate_index_matches_exact():
    x = clustered_vectors(20000, 32, 80, 0.5, seed=7)
    q, _ = _copy_queries(x, 300, radius_frac=0.6, seed=8)
    exact = label_copies(q, TrainIndex(x, kind="flat"), abs_tol=10.0)
    approx = label_copies(q, TrainIndex(x, kind="ivf"), abs_tol=10.0)
    assert 0.1 < exact.memorized.mean() < 0.9
    assert (exact.memorized == approx.memorized).mean() >= 0.99


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_batching_matches_one_shot(kind):
    x = random_vectors(5000, 24, seed=9)
    q = random_vectors(300, 24, seed=10)
    idx = VectorIndex.build(x, kind=kind, probe=4)
    d0, i0 = idx.search(q, 5, batch_size=10**6)
    for bs in (64, 7):
        d1, i1 = idx.search(q, 5, batch_size=bs)
        assert np.array_equal(i0, i1) and np.allclose(d0, d1, rtol=1e-5, atol=1e-5)


def test_cosine_reports_chord_distances():
    x = random_vectors(3000, 16, seed=11)
    idx = VectorIndex.build(x, metric="cosine")
    q = x[:5] * 3.0  # scaling does not change the cosine
    d, i = idx.search(q, 2)
    assert np.array_equal(i[:, 0], np.arange(5)) and np.allclose(d[:, 0], 0, atol=1e-3)
    xn = normalize_rows(x)
    cos = float(xn[0] @ xn[i[0, 1]])
    assert d[0, 1] == pytest.approx(float(cosine_to_distance(cos)), abs=1e-4)
    ivf = VectorIndex.build(x, metric="cosine", kind="ivf", probe=8)
    assert np.array_equal(ivf.search(q, 1)[1][:, 0], np.arange(5))


def test_embedders(tmp_path):
    torch = pytest.importorskip("torch")
    from mmh_bench.retrieval.embed import (EmbedderError, FunctionEmbedder, PixelEmbedder, embed,
                                 load_module_weights, load_torchscript)
    from mmh_bench.files import sha256_file
    imgs = np.random.default_rng(0).integers(0, 256, size=(10, 3, 4, 4), dtype=np.uint8)
    px = PixelEmbedder()(imgs)
    assert px.shape == (10, 48) and px.dtype == np.float32 and px.max() <= 1.0
    assert np.allclose(embed(imgs), px)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8))
    emb = FunctionEmbedder(net, "lin", batch_size=3, normalize=True)
    out = emb(imgs.astype(np.float32))
    assert out.shape == (10, 8) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert np.allclose(embed(imgs, lambda b: b.reshape(len(b), -1)[:, :5], batch_size=4),
                       imgs.reshape(10, -1)[:, :5])
    path = tmp_path / "m.pt"
    torch.jit.script(net).save(str(path))
    ts = load_torchscript(path, sha256_file(path), batch_size=4)
    with torch.no_grad():
        want = net(torch.as_tensor(imgs.astype(np.float32))).numpy()
    assert ts.name.startswith("torchscript:m.pt@")
    assert np.allclose(ts(imgs.astype(np.float32)), want, atol=1e-5)
    with pytest.raises(EmbedderError, match="checksum mismatch"):
        load_torchscript(path, "0" * 64)
    from safetensors.torch import save_file
    wpath = tmp_path / "w.safetensors"
    save_file(net.state_dict(), str(wpath))
    fresh = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8))
    loaded = load_module_weights(fresh, wpath, sha256_file(wpath))
    assert np.allclose(loaded(imgs.astype(np.float32)), ts(imgs.astype(np.float32)), atol=1e-5)


def test_dedup_cli_npy_and_datasets(tmp_path, capsys):
    x = random_vectors(5000, 16, seed=12)
    planted = plant_groups(x, SIZES, 0.5, seed=13)
    np.save(tmp_path / "emb.npy", x)
    out = tmp_path / "groups.json"
    assert main(["dedup", str(tmp_path / "emb.npy"), "--threshold", "0.5", "--out", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert {"groups", "sizes", "n_rows", "threshold", "metric", "linkage", "diameters"} <= set(doc)
    assert sorted(doc["sizes"]) == sorted(SIZES) and doc["n_rows"] == 5000
    assert all(len(g) == s >= 2 for g, s in zip(doc["groups"], doc["sizes"]))
    found = np.full(5000, -1)
    for k, g in enumerate(doc["groups"]):
        found[g] = k
    want = {tuple(np.flatnonzero(planted.group == k)) for k in range(len(SIZES))}
    assert {tuple(g) for g in doc["groups"]} == want
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"id": list(range(5000)), "embedding": x}).save_to_disk(str(tmp_path / "ds"))
    out2 = tmp_path / "groups2.json"
    assert main(["dedup", str(tmp_path / "ds"), "--threshold", "0.5", "--out", str(out2), "-q"]) == 0
    assert json.loads(out2.read_text())["groups"] == doc["groups"]
    assert "duplicate groups" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["dedup", "/nonexistent/emb.npy", "--threshold", "0.1", "--out", "o.json"], "does not exist"),
    (["dedup", "{tmp}", "--threshold", "0.1", "--out", "o.json"], "save_to_disk"),
    (["dedup", "{tmp}/bad.txt", "--threshold", "0.1", "--out", "o.json"], "neither a .npy"),
    (["dedup", "{tmp}/one.npy", "--threshold", "-1", "--out", "o.json"], "threshold"),
])
def test_dedup_cli_bad_input_is_one_line(tmp_path, capsys, argv, needle):
    (tmp_path / "bad.txt").write_text("x")
    np.save(tmp_path / "one.npy", np.zeros((3, 2), dtype=np.float32))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
