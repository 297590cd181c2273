"""The LID-estimation track: query points with known LID* (builder: mmh_bench.task.builders.lid_track);
its models, where it trains one, are the synthetic family's unconditional MLP."""
from mmh_bench.task.family import Family
from mmh_bench.task.spec_models import LIDMixtureTask, LIDPaperTask, LIDSkdimTask

FAMILY = Family(
    name="lid", title="LID estimation", board_position=20,
    builder="mmh_bench.task.builders.lid_track:build_lid", spec=LIDMixtureTask,
    spec_by_source={"mixture": LIDMixtureTask, "skdim": LIDSkdimTask, "dgm": LIDPaperTask},
    model_loaders={"mlp": "mmh_bench.task.models.mlp:load_mlp"})
