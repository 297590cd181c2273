"""The mini text-to-image family: captioned images, a cross-attention model trained on CPU
(builder: mmh_bench.task.builders.text_to_image)."""
from mmh_bench.task.family import Family
from mmh_bench.task.spec_models import TextToImageTask

FAMILY = Family(
    name="text-to-image", title="Text-to-image", board_position=40,
    builder="mmh_bench.task.builders.text_to_image:build_text_to_image", spec=TextToImageTask,
    capabilities=frozenset({"cross_attention"}),
    model_loaders={"cross-attn": "mmh_bench.task.models.cross_attn:load_cross_attn"},
    condition_forgetters={"cross-attn": "mmh_bench.task.models.cross_attn:forget_conditions"})
