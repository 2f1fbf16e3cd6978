"""Data checkers: input drift against each champion's training reference (checker 1) and the
score checks before publication (checker 2). The statistics are computed here in Python for
the registry and the tests; the warehouse computes the same in SQL."""
