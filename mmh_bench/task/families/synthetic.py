"""Synthetic manifold mixtures with known LID* (builder: mmh_bench.task.builders.synthetic)."""
from mmh_bench.task.family import Family
from mmh_bench.task.spec_models import SyntheticTask

FAMILY = Family(
    name="synthetic", title="Synthetic manifolds", board_position=10,
    builder="mmh_bench.task.builders.synthetic:build_synthetic", spec=SyntheticTask,
    model_loaders={"mlp": "mmh_bench.task.models.mlp:load_mlp"},
    condition_forgetters={"mlp": "mmh_bench.task.models.mlp:forget_conditions"},
    spec_coordinates=True)
