"""The stage packages of the build; tasks/core holds what they share (docs/architecture.md)."""
