"""The ASR labelers (Whisper, Amazon Transcribe), the transcript normaliser, quality and hallucination checks."""
