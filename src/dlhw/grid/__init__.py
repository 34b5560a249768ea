"""The hyperparameter grid: expand into content-keyed jobs (`jobs`), run them resumably and
in parallel, select, retrain and test (`run`), turn job outputs into rows (`select`)."""
