"""Benchmarks and the reference transcription of the original metrics they compare to.

Not part of the product: nothing outside benchmarks/ and tests/ imports this package.
"""
