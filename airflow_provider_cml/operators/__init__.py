"""Operators of the Cloudera AI provider."""
