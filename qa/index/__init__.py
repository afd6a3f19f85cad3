"""The index: a folder of segments (FAISS + BM25 + records) named by a manifest, built incrementally, committed
atomically, loaded with checks.

Building: build.py orchestrates scan.py (what changed), additions.py (new articles into a new segment),
merge.py (the merge policy and merging) and writer.py (lock, commit, clean-up). Reading: reader.py (load and
verify) gives searchable.py's ``Index``, from segment.py's segments. Shared: format.py (file names, format
version), manifest.py (the typed manifest, parsed and written in one place), dense.py (FAISS), lexical.py (BM25).
"""
