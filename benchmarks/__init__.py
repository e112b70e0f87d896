"""Reproducible speed and efficiency measurements of numpynet against its peers.

Run everything with ``python -m benchmarks.run`` (``--quick`` for a short
pass, ``--only core,profile`` for some sections). Each section is a module
with ``TITLE`` and ``run(ctx: Context) -> SectionResult`` (see
``benchmarks.common``) registered in ``benchmarks.run.SECTIONS``; the runner
writes one Markdown report and one JSON file per run under
``benchmarks/results/``.
"""
