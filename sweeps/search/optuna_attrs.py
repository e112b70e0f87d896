"""The user attributes the harness writes on Optuna trials and studies.

What they mean for the budget is :mod:`numpynet.sweeps.search.budget`'s rule.
"""

# user attributes written on trials
ATTR_FAIL_REASON = "fail_reason"  # why the trial failed (diverged, raised)


ATTR_FAIL_KIND = (
    "fail_kind"  # numeric (counts in the budget), error or fault (do not count): see numpynet.sweeps.search.failures
)


ATTR_INVOCATION = "invocation"  # the MLflow parent run of the sweep invocation that ran the trial


ATTR_RERUN_OF = "rerun_of"  # on a queued trial: the number of the interrupted trial whose values it runs again


ATTR_INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGTERM: does not count, is re-run


ATTR_RUN_ID = "mlflow_run_id"


ATTR_WORKER = "worker"


ATTR_PRUNED_EPOCH = "pruned_epoch"


ATTR_BEST_EPOCH = "objective_epoch"  # 0-based epoch whose metric is the trial's value (sweep.objective)


ATTR_BASELINE = "baseline"  # the study's reference configuration (sweep.baseline), queued before any other trial


ATTR_HEARTBEAT = "heartbeat_interval"  # the trial's worker sends heartbeats: it goes stale if that worker dies


# user attributes written on the study
STUDY_ATTR_JOINED = "numpynet_workers_joined"  # workers that ever ran here; gives each its own sampler seed


STUDY_ATTR_BUDGET = "numpynet_n_trials"  # sweep.n_trials of the latest invocation (numpynet-status shows it)


STUDY_ATTR_STOP = (
    "numpynet_stop:"  # + invocation: why that invocation's workers must stop (numpynet.sweeps.search.failures)
)
