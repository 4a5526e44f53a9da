"""Guards that fired during a build: one record shape, carried by stage results into the card.

A guard is a check that protects a release from being silently weaker than its spec asks (a
synthetic-only noise pool, a skewed split, a source that accepted nothing, ...). Every guard that
fires leaves a record here; publish puts them all in `card["guards"]`, the Markdown card shows
them first, and the flow logs each one. A record is plain JSON so it travels through Prefect
results and Dask workers unchanged.

Levels:
- `warning`: the release is published, but a person must know (logged at WARNING, top of card).
- `info`: a guard acted as documented (an item excluded, a policy applied); counted, not alarming.
- `error`: the build stopped; raised as `GuardError`, recorded when the failure itself is published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

Level = Literal["warning", "info", "error"]
LEVELS: tuple[Level, ...] = ("error", "warning", "info")


class GuardError(RuntimeError):
    """A guard refused to publish: the build cannot deliver what the spec asks."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"[{name}] {message}")
        self.name = name
        self.message = message

    def __reduce__(self) -> tuple[type[GuardError], tuple[str, str]]:
        """Pickles as itself, so it crosses a process boundary (a Dask worker, the finishing step's child)."""
        return (GuardError, (self.name, self.message))


def guard(name: str, message: str, level: Level = "warning", **detail: Any) -> dict[str, Any]:
    """One fired guard: `name` is a stable id (docs/guards.md), `message` a sentence for a person."""
    if level not in LEVELS:
        raise ValueError(f"guard level must be one of {LEVELS}, not {level!r}")
    record: dict[str, Any] = {"guard": name, "level": level, "message": message}
    if detail:
        record["detail"] = detail
    return record


def collect(*sources: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every guard record from stage results (each may hold a `guards` list), deduplicated, ordered.

    Order: errors, then warnings, then infos; within a level by guard name then message, so the card
    does not depend on which worker finished first.
    """
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for source in sources:
        if source is None:
            continue
        results = [source] if isinstance(source, Mapping) else list(source)
        for result in results:
            for record in (result or {}).get("guards") or []:
                key = (record["level"], record["guard"], record["message"])
                seen.setdefault(key, dict(record))
    return sorted(seen.values(), key=lambda r: (LEVELS.index(r["level"]), r["guard"], r["message"]))


def log_guards(records: Iterable[Mapping[str, Any]], warn: Callable[..., Any], info: Callable[..., Any]) -> None:
    """Log each guard once: warnings and errors at WARNING, infos at INFO."""
    for record in records:
        fn = info if record["level"] == "info" else warn
        fn("guard %s: %s", record["guard"], record["message"])
