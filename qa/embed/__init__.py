"""Embed: text becomes L2-normalised float32 vectors (ONNX, torch, hashing or Ray backends)."""
