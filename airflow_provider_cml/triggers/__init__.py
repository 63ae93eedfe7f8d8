"""Triggers of the Cloudera AI provider."""
