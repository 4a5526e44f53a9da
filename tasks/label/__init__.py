"""Label: transcripts, text sentiment and speech presence per shard; steps.py holds the steps."""
