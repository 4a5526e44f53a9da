"""The validator's report: problems as sentences, checks passed, and how examples are listed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5


@dataclass
class ValidationReport:
    release: str
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def passed(self, check: str) -> None:
        self.checks.append(check)


def examples(values: Any) -> str:
    """The first few values, and how many more there are."""
    items = [str(v) for v in list(values)[:MAX_EXAMPLES]]
    more = len(list(values)) - len(items)
    return ", ".join(items) + (f" (+{more} more)" if more > 0 else "")
