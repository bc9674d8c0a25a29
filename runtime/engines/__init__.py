"""Teola package."""
