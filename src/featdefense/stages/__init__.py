"""One module per stage: read input files, call the pure code, write output files atomically.

Each module has `run(p, inp, out, **wildcards)`: `p` holds exactly the params the stage declares in
featdefense.pipeline, `inp` and `out` map the stage's declared names to paths.
"""
