"""Access levels a detector declares; the context hands out exactly what was declared."""
from __future__ import annotations

import enum


class Access(enum.Flag):
    """What a detector may see besides the generated samples.

    Levels combine with ``|`` (e.g. ``Access.MODEL | Access.TRAIN_DATA``). ``MODEL_COND``
    implies ``MODEL``: conditions are useless without the model that reads them. ``GENERATION``
    (the generation-time setting) implies ``MODEL_COND`` (so, like it, applies to conditional
    tasks: the published generation-time detectors all read the prompt) and adds the generation
    itself: each sample's initial noise x_T (``batch.noise``) and a replay of its trajectory
    (``ctx.generation``).
    """

    SAMPLES = 1
    MODEL = 2
    MODEL_COND = 4
    TRAIN_DATA = 8
    GENERATION = 16

    def grants_model(self) -> bool:
        return bool(self & (Access.MODEL | Access.MODEL_COND | Access.GENERATION))

    def grants_cond(self) -> bool:
        return bool(self & (Access.MODEL_COND | Access.GENERATION))

    def grants_generation(self) -> bool:
        return bool(self & Access.GENERATION)

    def grants_train(self) -> bool:
        return bool(self & Access.TRAIN_DATA)

    @property
    def label(self) -> str:
        """Stable lower-case name used in result files and on the board (e.g. ``model+train_data``)."""
        parts = [m.name.lower() for m in Access if m in self and m is not Access.SAMPLES]
        return "+".join(parts) if parts else "samples"

    @classmethod
    def parse(cls, text: str) -> "Access":
        """Inverse of :attr:`label`."""
        out = cls(0)
        for part in text.split("+"):
            try:
                out |= cls[part.strip().upper()]
            except KeyError:
                raise ValueError(f"unknown access level {part!r}; expected one of "
                                 f"{[m.name.lower() for m in cls]}") from None
        return out or cls.SAMPLES
