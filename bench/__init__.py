"""auto-infer's benchmarks: the pipeline against the raw tools, side by side (issue 6).

Run ``python -m bench`` from the repository (docs/benchmarks.md is written), or
``python -m bench --quick --out /tmp/b.md`` for the CI smoke run. See bench/__main__.py.
"""
