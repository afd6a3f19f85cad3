"""What produces a file in qa/models: never imported by qa/."""
