"""Studies of gdtorch, each run from the repository root as ``python -m experiments.<name>``.

A study measures, writes its numbers to ``experiments/<name>/results.json`` and its plots beside
it, and renders its ``README.md`` from ``README.template.md`` and those numbers
(:mod:`experiments.render`). The helpers they share are in :mod:`experiments.common`.
"""
