"""dlhw: reproduce deep-learning homework results exactly, quickly and verifiably.

From Python or Jupyter:

    import dlhw
    run = dlhw.train("configs/softmax_train.yaml", **{"train.epochs": 5})   # -> Run
    run.metrics["test_accuracy"]; run.history; run.figure("loss_curves"); run.predict(images)
    g = dlhw.grid("configs/softmax_small.yaml", jobs=2)                     # -> GridRun
    g.best; g.rows; g.retrained
    dlhw.load_run("results/softmax_small")                                  # read a run folder back

  load_config(config, **overrides) -> Config    validated like a YAML file and --set
  train(config, out=None, progress=None, **overrides) -> Run
  grid(config, out=None, jobs=None, progress=None, **overrides) -> GridRun
                                                 (the `dlhw.grid` subpackage is callable)
  load_run(path) -> Run | GridRun                a run folder read back, no data set needed
  load_data(name="fashion-mnist") -> Dataset     raw uint8 arrays, e.g. for Run.predict

`config` may be a YAML path, a dict or a `Config`; overrides are dotted keys
(`**{"train.epochs": 5}`) or sections (`train={"epochs": 5}`), validated like `--set`.
Mistakes raise `ConfigError`, `DataError` or `RunError`, all subclasses of `DlhwError`.
"""

__version__ = "0.1.0"

from dlhw.errors import ConfigError, DataError, DlhwError, RunError  # noqa: E402
from dlhw.config import Config  # noqa: E402
from dlhw.api import GridRun, Run, load_config, load_data, load_run, train  # noqa: E402
import dlhw.grid  # noqa: E402,F401  - the subpackage is callable: dlhw.grid(config, ...) is dlhw.api.grid

__all__ = ["Config", "ConfigError", "DataError", "DlhwError", "GridRun", "Run", "RunError", "__version__",
           "grid", "load_config", "load_data", "load_run", "train"]
