"""What every stage shares: storage, audio, shards and work folders, label cache, hashing, guards, limits, security."""
