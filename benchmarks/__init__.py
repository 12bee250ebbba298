"""Benchmarks: this library against per-record deletes, the article's approach and the limit.

Run with ``python -m benchmarks`` (see ``docs/benchmarks.md``). This package is not part of
the distributed library; it imports nothing heavy at package level, because
``benchmarks.worker`` runs in fresh processes whose imports are part of what is measured.
"""
