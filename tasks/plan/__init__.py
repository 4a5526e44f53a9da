"""Plan: splits, ASR balance, PII, plausibility and the stage rows with their augmentation recipes."""
