"""The quote ranker: its training (``train``) and the trees it writes (``trees``); the file is qa/models/ranker.json."""
