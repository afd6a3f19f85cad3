"""Load/clean -> chunk: article files become cleaned Articles and Chunks with exact offsets."""
