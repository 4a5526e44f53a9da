"""Publish: windows and weights into the release, the card, its Markdown/HTML/plots, and release bookkeeping."""
