"""The hyperparameter grid: expand into content-keyed jobs (`jobs`), run them resumably and
in parallel, select, retrain and test (`run`), turn job outputs into rows (`select`).

`dlhw.grid` is also the API's function: `dlhw.grid(config, out=None, jobs=None, progress=None,
**overrides)` runs a grid and returns a `dlhw.GridRun` (see `dlhw.api.grid`). A function and a
subpackage cannot share the name `dlhw.grid` (importing `dlhw.grid.run` would replace the function),
so the package itself is callable.
"""
import sys as _sys
import types as _types


class _CallablePackage(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        from dlhw.api import grid

        return grid(*args, **kwargs)

    @property
    def __wrapped__(self):  # inspect.signature(dlhw.grid) and help() show the API function's
        from dlhw.api import grid

        return grid


_sys.modules[__name__].__class__ = _CallablePackage
