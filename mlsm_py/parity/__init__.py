"""The parity gate: compiled SQL (or the Python-model route) against the library itself, on
holdout, adversarial and fuzzed rows, run in the warehouse. Beside the compiler, not in it:
the compiler only turns estimators into SQL."""
