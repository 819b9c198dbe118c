"""Features + captions -> seq2seq captioner -> captions (train, decode, evaluate on cached features)."""
