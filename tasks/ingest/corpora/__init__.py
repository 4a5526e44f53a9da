"""Corpus adapters, one module per layout; registry.py maps a spec kind to its adapter."""
