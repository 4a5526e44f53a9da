"""Shares the session's demo releases with tests/manifests (built once per process)."""

from tests.manifests.conftest import demo_releases, lazy_release, materialized_release  # noqa: F401
