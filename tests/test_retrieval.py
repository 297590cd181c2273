import numpy as np
import pytest

from mmh_bench.retrieval.train_index import TrainIndex, duplicate_groups, label_copies


def test_duplicates_count_once():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 5))
    train = np.concatenate([base, np.repeat(base[:1], 9, axis=0), base[3:4] + 1e-4])
    g = duplicate_groups(train, tol=1e-3)
    assert g.max() + 1 == 20
    idx = TrainIndex(train, dedup_tol=1e-3)
    assert len(idx) == 20
    assert idx.group_size[0] == 10 and idx.group_size[3] == 2
    # an exact copy of the duplicated point: d1 = 0 and d2 is another *distinct* point
    d, i = idx.search(base[:1], 2)
    assert d[0, 0] == pytest.approx(0, abs=1e-5) and d[0, 1] > 0.1


def test_distances_are_plain_not_squared():
    idx = TrainIndex(np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]]))
    d, _ = idx.search(np.array([[0.0, 0.0]]), 2)
    assert d[0, 1] == pytest.approx(5.0)


def test_ratio_and_absolute_tolerance():
    train = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    q = np.array([[0.05, 0.0],   # copy: ratio 0.05/0.95, d1 small
                  [0.3, 0.0],    # ratio 0.3/0.7 > 1/3: not a copy
                  [0.0, 4.0]])   # ratio 1/4.0 < 1/3 but d1 = 1 > abs_tol: blob, not copy
    lab = label_copies(q, TrainIndex(train), abs_tol=0.5)
    assert lab.memorized.tolist() == [True, False, False]
    assert lab.nn.tolist() == [0, 0, 2]


class _NoSecondNeighbour:
    """An index that finds one neighbour, as an approximate index can: d2 = inf and index -1."""

    def __init__(self, found: bool) -> None:
        self.found = found

    def __len__(self) -> int:
        return 2

    def search(self, x, k, **_):
        d = np.array([[0.01, np.inf]] * len(x))
        i = np.array([[0 if self.found else -1, -1]] * len(x))
        return d, i

    rep_row = np.array([0, 1])
    group_size = np.array([1, 1])


def test_missing_second_neighbour_is_no_copy_and_unfound_is_recorded():
    q = np.zeros((3, 2))
    lab = label_copies(q, _NoSecondNeighbour(found=True), abs_tol=0.5)
    assert not lab.memorized.any() and np.isinf(lab.ratio).all()  # d2 = inf is no evidence of a copy
    lab = label_copies(q, _NoSecondNeighbour(found=False), abs_tol=0.5)
    assert not lab.memorized.any() and (lab.nn == -1).all() and (lab.copied_row == -1).all()
