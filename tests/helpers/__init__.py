"""Helpers of the tests and the benchmarks, imported as ``tests.helpers.<module>`` everywhere.

- ``commands``: run a ``numpynet-*`` command in a new process (forked by ``warm_starter`` in a test session);
- ``services``: PostgreSQL databases and MLflow servers for a test, and waiting for a condition;
- ``core``: data and child processes of the core's tests;
- ``tiny_sweeps``: the small sweeps several search tests read back, run once per session;
- ``session_needs`` and ``throwaway_postgres``: what the selected tests need before any runs.
"""
