"""Store: the segmented index folder (FAISS + BM25 + records + manifest), written atomically."""
