"""Guard records: one shape, collected from stage results in a stable order, shown first in the card."""

from __future__ import annotations

import pytest

from tasks.core import guards


def test_collect_dedupes_and_orders_by_level_then_name() -> None:
    a = guards.guard("b_guard", "second", level="warning")
    b = guards.guard("a_guard", "first", level="info", count=3)
    c = guards.guard("z_guard", "stop", level="error")
    results = [{"guards": [a, b]}, {"guards": [a]}, None, {"no_guards": 1}]
    got = guards.collect(results, {"guards": [c]})
    assert [r["guard"] for r in got] == ["z_guard", "b_guard", "a_guard"]
    assert got[2]["detail"] == {"count": 3}


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        guards.guard("x", "y", level="loud")  # type: ignore[arg-type]


def test_markdown_card_shows_warnings_before_the_summary() -> None:
    from tasks.publish.card import _render_guards

    lines = _render_guards([guards.guard("noise_pool_synthetic", "only synthetic noise"),
                            guards.guard("duration_limits", "2 items excluded", level="info")])
    text = "\n".join(lines)
    assert "## ⚠ Warnings" in text and "noise_pool_synthetic" in text
    assert text.index("Warnings") < text.index("Guards that acted")


def test_a_guard_error_crosses_a_process_boundary_as_itself() -> None:
    """Dask workers and the finishing step's child process send exceptions back pickled."""
    import pickle

    back = pickle.loads(pickle.dumps(guards.GuardError("output_lock_lost", "another build took it")))
    assert isinstance(back, guards.GuardError)
    assert (back.name, back.message, str(back)) == ("output_lock_lost", "another build took it",
                                                    "[output_lock_lost] another build took it")
