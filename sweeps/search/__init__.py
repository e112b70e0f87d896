"""The harness, searching: the study file, the space, samplers, budget, workers, trials, refit, report."""
