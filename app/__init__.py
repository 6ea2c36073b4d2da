"""Lastra Chat."""
