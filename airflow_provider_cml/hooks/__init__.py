"""Hooks of the Cloudera AI provider."""
