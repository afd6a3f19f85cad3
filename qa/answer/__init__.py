"""Retrieve -> answer: hits, candidate sentences, scores, and the quotes of an Answer."""
