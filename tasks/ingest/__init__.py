"""Ingest: corpus adapters turn a source into utterance rows and rejects; step.py cuts them into shards."""
