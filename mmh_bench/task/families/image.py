"""Real images with injected duplicates and a rare class (builder: mmh_bench.task.builders.image)."""
from mmh_bench.task.family import Family
from mmh_bench.task.spec_models import ImageTask

FAMILY = Family(
    name="image", title="Real images", board_position=30,
    builder="mmh_bench.task.builders.image:build_image", spec=ImageTask,
    model_loaders={"pixel-mlp": "mmh_bench.task.models.pixel_mlp:load_pixel_mlp"},
    condition_forgetters={"pixel-mlp": "mmh_bench.task.models.mlp:forget_conditions"})
