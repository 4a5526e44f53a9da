"""The text sentiment labelers (VADER, trained, HF model, Comprehend) and their agreement report."""
