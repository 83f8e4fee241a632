"""The sections of `benchmarks/perf.py`, one module each; `perf.py` runs them and prints the table.

Not an installed package: `perf.py` imports it from its own folder (Python puts the script's
folder first on `sys.path`). Every section module has `run(args, tmp, out)`, which measures and
stores its figures in `out[<section>]`; `common.py` and `pairing.py` hold what several share.
"""
