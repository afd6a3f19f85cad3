"""The index: a folder of segments (FAISS + BM25 + records) named by a manifest, built incrementally, committed
atomically, loaded with checks.

Building: build.py orchestrates scan.py (what changed), additions.py (new articles into a new segment),
merge.py (the merge policy and merging) and writer.py (lock, commit, clean-up). Reading: reader.py (load and
verify, with agreement.py's checks) gives searchable.py's ``Index``, from segment.py's segments and live.py's live
articles (from the segments' tables). Shared: format.py (file names, format version), manifest.py (the typed
manifest, parsed and written in one place), catalog.py (every article's source and rows, for builds and
listings), dense.py (FAISS), lexical.py (BM25).
"""
