"""Augment: the noise/RIR pools and the materialisation of augmented utterances as FLAC."""
