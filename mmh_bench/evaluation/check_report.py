"""A conformance report: one line per check. Built by :mod:`.conformance` in whatever process runs
the checks, and rebuilt from JSON where a sandboxed describe worker ran them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Check:
    name: str
    passed: bool
    message: str
    level: str = "error"  # "error" fails the report; "warning" and "info" do not


@dataclass
class CheckReport:
    """The outcome of :func:`check_detector`; ``ok`` when no error-level check failed."""

    detector: str
    task: str
    checks: list[Check] = field(default_factory=list)
    kind: str = "detector"  # or "mitigator" (check_mitigator)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks if c.level == "error")

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.level == "error"]

    def add(self, name: str, passed: bool, message: str, level: str = "error") -> bool:
        self.checks.append(Check(name, bool(passed), message, level))
        return bool(passed)

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.checks]

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise AssertionError(str(self))

    def __str__(self) -> str:
        head = f"check_{self.kind}({self.detector!r}) on task {self.task!r}: " + ("passed" if self.ok else "FAILED")
        lines = [head]
        for c in self.checks:
            mark = "ok  " if c.passed else ("FAIL" if c.level == "error" else "warn")
            lines.append(f"  [{mark}] {c.name}: {c.message}")
        return "\n".join(lines)
