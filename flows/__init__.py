"""Prefect flows and the CLI: wiring only; the work is in the stage packages under tasks/."""
