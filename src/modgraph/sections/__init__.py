"""Compute helpers of the book's section notebooks, one module per section."""
