"""Sensors of the Cloudera AI provider."""
