"""The quote ranker: its training (``train``); the model file it writes is qa/models/ranker.json."""
