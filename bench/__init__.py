"""effdl microbenchmarks: each kernel against what a user would otherwise use (DESIGN.md §6).

Run ``python -m bench --help``; the method and the measured tables are in ``bench/README.md``.
"""
