"""Helpers shared by the tests and the benchmarks; not part of the library.

- :mod:`testkit.proxy`: the loopback proxy in front of DynamoDB Local (injected faults,
  round-trip latency, request counts);
- :mod:`testkit.events`: DynamoDB stream records and events as Lambda delivers them, a
  Lambda context, the benchmark's batches, and the independent key oracle ``target_key``;
- :mod:`testkit.tables`: filling tables, reading their keys, a client that counts deletes.

Nothing here imports ``stream_scavenger``: what these build is what a test compares the
library with. The wheel holds ``src/stream_scavenger`` only, so this package never ships.
Imported from the repository root (pytest's ``pythonpath``; ``python -m benchmarks``).
"""
