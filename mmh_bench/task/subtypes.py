"""The memorization subtypes: one vocabulary for the builders, the labels, the schema and the board.

Codes are what a build stores per sample; names are what specs, result files and tables carry.
"""
from __future__ import annotations

#: placed by construction (data-driven duplicates and overfitting-driven copies: synthetic and image tasks)
CONSTRUCTED_SUBTYPES = ("DD", "OD")
#: from the Stable Diffusion prompt sets' labels (verbatim and template memorization)
PROMPT_SUBTYPES = ("VM", "TM")
#: the names of memorized subtypes, in code order
SUBTYPE_NAMES = CONSTRUCTED_SUBTYPES + PROMPT_SUBTYPES
#: subtype code stored per sample -> name (0: not memorized)
SUBTYPES = dict(enumerate(("none",) + SUBTYPE_NAMES))
SUBTYPE_CODE = {v: k for k, v in SUBTYPES.items()}
