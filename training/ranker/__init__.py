"""Training of the quote ranker, the file qa/models/ranker.json (docs/ranker.md)."""
