"""Stand-ins for submitted detectors and mitigators: their metadata, type-checked, and no code.

A sealed worker describes the submitted class (:mod:`.describe_worker`); the evaluator holds only
this stand-in, so a submission's code is never imported in the evaluator's process."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

from mmh_bench.api.access import Access
from mmh_bench.api.detector import GROUPS, Detector, LIDEstimator
from mmh_bench.api.mitigator import Mitigator

#: the file a describe worker writes its description to
DESCRIBE_FILE = "describe.json"


#: what a description holds, by kind
COMMON_KEYS = ("name", "access", "version", "params", "cost_note", "requires", "source")


META_KEYS = {"detector": COMMON_KEYS + ("group", "note", "reference", "is_lid_estimator"),
             "mitigator": COMMON_KEYS + ("sweep", "settings")}


def _registry_error(msg: str) -> Exception:
    from mmh_bench.registry import RegistryError
    return RegistryError(msg)


# -- the stand-in -------------------------------------------------------------------------------
class StandIn:
    """Base of the stand-ins :func:`standin` builds: metadata only, no code of the detector's
    (or mitigator's).

    ``sealed_ref``: how the scoring worker finds the class (``detector/FILE.py:Class`` for a file,
    which ``sealed_file`` ships into the view; ``module:Class`` or an entry-point name otherwise).
    ``sealed_source``: the class's ``module:qualname``, as recorded in the result."""

    sealed_ref: ClassVar[str] = ""
    sealed_file: ClassVar[Path | None] = None
    sealed_source: ClassVar[str] = ""
    sealed_origin: ClassVar[str] = ""  # the reference as the user gave it
    sealed_meta: ClassVar[dict[str, Any]] = {}
    sealed_kind: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        self._params = copy.deepcopy(params)

    def params(self) -> dict[str, Any]:
        return copy.deepcopy(self._params)

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return self.params()

    def set_params(self, **params: Any) -> "StandIn":
        raise TypeError(f"{self.sealed_origin}: a sealed stand-in's parameters are fixed; describe it again")

    def clone(self) -> "StandIn":
        return type(self)(**self._params)

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise RuntimeError(f"{self.sealed_kind} {self.name!r} ({self.sealed_origin}) runs only sealed: its code "
                           "is never imported in the evaluator (evaluate with isolation='sealed' or 'auto')")

    fit = _refuse

    def __repr__(self) -> str:
        return (f"Sealed{self.sealed_kind.title()}({self.sealed_origin!r}, name={self.name!r}, "
                f"access={self.access.label})")


class SealedDetector(StandIn, Detector):
    """A detector's stand-in."""

    sealed_kind: ClassVar[str] = "detector"
    score = estimate = StandIn._refuse  # type: ignore[assignment]


class SealedMitigator(StandIn, Mitigator):
    """A mitigator's stand-in; its settings are those the worker recorded."""

    sealed_kind: ClassVar[str] = "mitigator"
    generate = StandIn._refuse  # type: ignore[assignment]

    def settings(self) -> list["Mitigator"]:
        return [type(self)(**p) for p in self.sealed_meta["settings"]]


STANDIN_BASE: dict[str, type] = {"detector": SealedDetector, "mitigator": SealedMitigator}


def _is_names(obj: Any) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) for k in obj)


def _checked(meta: Any, origin: str, kind: str = "detector") -> dict[str, Any]:
    """The worker's metadata, type-checked: it comes from untrusted code."""
    bad = lambda what: _registry_error(f"{kind} {origin!r}: its description has {what}")  # noqa: E731
    keys = META_KEYS[kind]
    if not isinstance(meta, dict) or set(keys) - set(meta):
        raise bad(f"missing fields {sorted(set(keys) - set(meta or {}))}")
    strings = ("name", "access", "version", "cost_note", "source") + (("group", "note") if kind == "detector" else ())
    for key in strings:
        if not isinstance(meta[key], str):
            raise bad(f"a non-string {key}")
    if not meta["name"]:
        raise bad("no name")
    if not _is_names(meta["params"]):
        raise bad("parameters that are not a mapping of names")
    if not isinstance(meta["requires"], list) or not all(isinstance(r, str) for r in meta["requires"]):
        raise bad("requirements that are not a list of strings")
    if kind == "detector":
        if meta["group"] not in ("", *GROUPS):
            raise bad(f"group {meta['group']!r}, not one of {GROUPS}")
        for key in ("reference", "is_lid_estimator"):
            if not isinstance(meta[key], bool):
                raise bad(f"a non-boolean {key}")
    else:
        sweep = meta["sweep"]
        if not (isinstance(sweep, list) and len(sweep) == 2 and isinstance(sweep[0], str)
                and isinstance(sweep[1], list)):
            raise bad("a sweep that is not [parameter, [settings]]")
        if not isinstance(meta["settings"], list) or not meta["settings"] or not all(map(_is_names, meta["settings"])):
            raise bad("settings that are not a list of parameter mappings")
    try:
        Access.parse(meta["access"])
    except ValueError as exc:
        raise bad(f"access {meta['access']!r} ({exc})") from None
    _schema_checked(meta, bad, kind)
    return meta


def _schema_checked(meta: dict[str, Any], bad: Any, kind: str) -> None:
    """The description against the rules its result will be written under (a name that is a
    path, a control character in a note, ...), and the group rules: untrusted code ranks where
    its access puts it, or lower (``shortcut``, ``chance``), and never restates the labelling rule."""
    from pydantic import TypeAdapter, ValidationError
    from mmh_bench.api.detector import DOWNGRADES
    from mmh_bench.leaderboard.schema import Label, Name, Note, Plain
    fields: list[tuple[str, Any]] = [("name", Name), ("version", Label), ("source", Label),
                                     ("params", dict[Label, Plain])]
    if kind == "detector" and meta["note"]:
        fields.append(("note", Note))
    for key, typ in fields:
        try:
            TypeAdapter(typ).validate_python(meta[key])
        except ValidationError as exc:
            raise bad(f"a {key} the result schema refuses: {exc.errors()[0]['msg']}") from None
    if kind == "detector":
        if meta["reference"]:
            raise bad("reference = True: only the shipped copy-rule restates the labelling rule")
        if meta["group"] and meta["group"] not in DOWNGRADES:
            raise bad(f"group {meta['group']!r}: a detector's group follows its access; it may only place "
                      f"itself lower ({' or '.join(DOWNGRADES)})")


def standin(meta: dict[str, Any], origin: str, *, ref: str | None = None, file: Path | None = None,
            kind: str = "detector") -> StandIn:
    """A stand-in for the described detector (or mitigator), constructed with its recorded parameters.

    ``origin``: the reference as given (without parameters); ``ref``/``file``: what the scoring
    worker loads (default ``origin``; a file reference ships ``file`` as ``detector/NAME``)."""
    meta = _checked(meta, origin, kind)
    base = STANDIN_BASE[kind]
    qualname = meta["source"].rpartition(":")[2] or kind.title()
    bases = (base, LIDEstimator) if meta.get("is_lid_estimator") else (base,)
    ns = {"name": meta["name"], "access": Access.parse(meta["access"]), "version": meta["version"],
          "cost_note": meta["cost_note"], "requires": tuple(meta["requires"]),
          "sealed_ref": ref or origin, "sealed_file": file, "sealed_source": meta["source"],
          "sealed_origin": origin, "sealed_meta": copy.deepcopy(meta), "__module__": __name__,
          "__qualname__": f"{base.__name__}[{qualname}]"}
    if kind == "detector":
        ns.update(reference=meta["reference"], group=meta["group"], note=meta["note"])
    else:
        ns["sweep"] = (meta["sweep"][0], tuple(meta["sweep"][1]))
    cls = type(f"{base.__name__}[{qualname}]", bases, ns)
    return cls(**meta["params"])
