"""The edges: the CLI, the web chat and the library they share; they format, the stages decide."""
