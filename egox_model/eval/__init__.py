"""Metrics and result tables."""
