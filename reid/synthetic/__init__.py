"""Synthetic salamanders (head crops with stable spot patterns) and whole scenes with head
boxes, for the demo, the tests and the benchmarks."""
