"""The Python API: dlhw.load_config / train / grid / load_run, validation, figures, predict, backend."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dlhw
from dlhw.config import Config, TrainConfig

BASE = {"name": "api", "data": {"name": "fashion-mnist"},
        "train": {"batch_size": 256, "learning_rate": 0.1, "epochs": 2, "alpha": 0.0001}}


# --------------------------------------------------------------------------- configs and overrides


def test_overrides_dotted_and_nested_change_only_the_keys_given(write_config):
    path = write_config("name: c\ntrain: {batch_size: 32, epochs: 3, alpha: 0.01}\n")
    dotted = dlhw.load_config(path, **{"train.epochs": 5, "data.val_fraction": 0.1})
    nested = dlhw.load_config(path, train={"epochs": 5}, data={"val_fraction": 0.1})
    assert dotted == nested
    assert (dotted.train.epochs, dotted.train.batch_size, dotted.train.alpha) == (5, 32, 0.01)
    assert dotted.data.val_fraction == 0.1 and dotted.source == str(path)
    from_dict = dlhw.load_config({"name": "c", "train": {"batch_size": 32, "epochs": 3, "alpha": 0.01}},
                                 train={"epochs": 5}, **{"data.val_fraction": 0.1})
    assert from_dict == dotted
    again = dlhw.load_config(dotted, name="d", grid={"learning_rate": [0.1, 0.2]})
    assert again.name == "d" and again.grid.learning_rate == (0.1, 0.2) and again.grid.epochs == (5,)
    assert dlhw.load_config(again, grid=None).grid is None


def test_overrides_take_numpy_values_as_yaml_would():
    cfg = dlhw.load_config(BASE, grid={"learning_rate": np.logspace(-2, -1, 3), "batch_size": np.array([64])})
    assert cfg.grid.learning_rate == pytest.approx((0.01, 0.0316227766, 0.1))
    assert type(cfg.grid.batch_size[0]) is int


@pytest.mark.parametrize("overrides, message", [
    ({"train.epochs": 0}, "train.epochs=0: 'train.epochs' must be an integer >= 1. Got 0 instead."),
    ({"train": {"epochz": 3}}, "unknown key 'train.epochz' (did you mean 'epochs'?)"),
    ({"trian.epochs": 3}, "unknown key 'trian' (did you mean 'train'?)"),
    ({"train": 5}, "'train' must be a dict of its keys"),
    ({"data.val_fraction": 1.5}, "'data.val_fraction' must be a float in [0, 1). Got 1.5 instead."),
])
def test_bad_override_is_one_clear_line(overrides, message):
    with pytest.raises(dlhw.ConfigError) as e:
        dlhw.load_config(BASE, **overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("make, message", [
    (lambda: Config(name="x", train={"epochs": 0}), "'train.epochs' must be an integer >= 1. Got 0 instead."),
    (lambda: TrainConfig(learning_rate=-0.1), "'train.learning_rate' must be a float > 0. Got -0.1 instead."),
    (lambda: Config(name="x").replace(train={"dtype": "half"}), "'train.dtype' must be one of 'float32', 'float64'"),
    (lambda: Config(name="x").replace(train={"lerning_rate": 1}),
     "unknown key 'train.lerning_rate' (did you mean 'learning_rate'?)"),
    (lambda: Config(name="x", grid={"alpha": [0.1]}, data={"val_fraction": 0}), "a 'grid' needs a validation set"),
    (lambda: Config(name="a/b"), "'name' must be a plain folder name without '/'. Got 'a/b' instead."),
])
def test_configs_made_in_python_are_validated_like_yaml(make, message):
    with pytest.raises(dlhw.ConfigError) as e:
        make()
    assert str(e.value) == message or str(e.value).startswith(message)


def test_python_and_yaml_give_the_same_message(write_config):
    with pytest.raises(dlhw.ConfigError) as from_yaml:
        dlhw.load_config(write_config("train: {learning_rate: -1}\n"))
    with pytest.raises(dlhw.ConfigError) as from_python:
        Config(name="x").replace(train={"learning_rate": -1})
    assert str(from_yaml.value).endswith(": " + str(from_python.value))


def test_errors_are_plain_exceptions_and_the_cli_maps_them(write_config, tmp_path):
    import click

    assert not issubclass(dlhw.DlhwError, click.ClickException)
    assert all(issubclass(c, dlhw.DlhwError) for c in (dlhw.ConfigError, dlhw.DataError, dlhw.RunError))
    r = subprocess.run([sys.executable, "-m", "dlhw", "train", "--config", str(write_config("train: {epochs: 0}\n")),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'cfg.yaml'}: 'train.epochs' must be an "
                                             f"integer >= 1. Got 0 instead."]


def test_grid_without_a_grid_section_and_bad_config_type():
    import inspect

    import dlhw.grid.run  # noqa: F401 - importing the subpackage's modules must not hide the function

    assert callable(dlhw.grid) and list(inspect.signature(dlhw.grid).parameters)[:4] == [
        "config", "out", "jobs", "progress"]
    with pytest.raises(dlhw.ConfigError, match=r"has no 'grid' section; add one .* or use dlhw.train"):
        dlhw.grid(BASE)
    with pytest.raises(dlhw.ConfigError, match="config must be a YAML file path, a dict or a dlhw.Config. Got int"):
        dlhw.train(3)
    with pytest.raises(dlhw.ConfigError, match="config file not found"):
        dlhw.train("nope.yaml")
    with_grid = {**BASE, "grid": {"learning_rate": [0.1]}}
    with pytest.raises(dlhw.ConfigError, match="'scheduler' must be 'tcp://HOST:PORT', 'tls://HOST:PORT' or 'local'"):
        dlhw.grid(with_grid, scheduler=8786)
    with pytest.raises(dlhw.ConfigError, match="'allow_mixed' only applies with a scheduler"):
        dlhw.grid(with_grid, allow_mixed=True)


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion_dir):
    out = tmp_path_factory.mktemp("api") / "run"
    return dlhw.train(BASE, out=out, progress=False, **{"data.dir": str(fashion_dir)})


def test_train_returns_the_run_it_wrote(trained):
    assert isinstance(trained, dlhw.Run) and not isinstance(trained, dlhw.GridRun)
    assert trained.config.train.epochs == 2 and trained.metrics["epochs_run"] == 2
    assert [r["epoch"] for r in trained.history] == [1, 2]
    assert trained.history[-1]["test_accuracy"] == trained.metrics["test_accuracy"]
    assert (trained.path / "figures" / "weights.png").is_file() and (trained.path / "report.md").is_file()
    html = trained._repr_html_()
    assert f"{trained.metrics['test_accuracy']:.2%}" in html and "<table>" in html


def test_history_frame_is_a_dataframe_or_says_what_to_install(trained):
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"history_frame\(\) needs pandas: pip install pandas"):
            trained.history_frame()
        return
    frame = trained.history_frame()
    assert list(frame["epoch"]) == [1, 2] and frame["test_accuracy"].iloc[-1] == trained.metrics["test_accuracy"]


def test_predict_applies_the_stored_preprocessing(trained, fashion_dir):
    d = dlhw.load_data(data_dir=fashion_dir)
    pred = trained.predict(d.X_test)
    assert pred.shape == (10000,) and pred.dtype == np.int64
    assert (pred == d.y_test).mean() == trained.metrics["test_accuracy"]  # exactly the recorded number
    assert trained.predict(d.X_test[:3].reshape(3, 28, 28)).tolist() == pred[:3].tolist()
    assert trained.predict(d.X_test[7].reshape(28, 28)).tolist() == [pred[7]]
    assert trained.predict(d.X_test[:5] / 255.0, preprocessed=True).tolist() == pred[:5].tolist()
    with pytest.raises(dlhw.DataError, match=r"look already scaled .* Pass preprocessed=True"):
        trained.predict(d.X_test[:5] / 255.0)
    with pytest.raises(dlhw.DataError, match=r"expected raw pixels in \[0, 255\]. Got values in \[-1, 3\]"):
        trained.predict(np.array([[-1.0, 3.0] * 392]))
    with pytest.raises(dlhw.DataError, match=r"expected images with 784 pixels each.*Got shape \(2, 10\)"):
        trained.predict(np.zeros((2, 10)))


def test_load_run_needs_no_data_set(trained, tmp_path, monkeypatch):
    import dlhw.data.locate as locate

    monkeypatch.setenv("DLHW_DATA", str(tmp_path))  # nothing there
    monkeypatch.setattr(locate, "SYSTEM_DATA_ROOT", tmp_path / "none")
    monkeypatch.chdir(tmp_path)
    (trained.path / "config.yaml").write_text((trained.path / "config.yaml").read_text()
                                              .replace(f"dir: {trained.config.data.dir}", "dir: null"))
    with pytest.raises(dlhw.DataError, match="data not found"):
        dlhw.load_data()
    run = dlhw.load_run(trained.path)
    assert type(run) is dlhw.Run and run.metrics == trained.metrics and run.history == trained.history
    assert run.config.data.dir is None
    X = np.zeros((2, 784), dtype=np.uint8)
    assert run.predict(X).tolist() == trained.predict(X).tolist()
    from matplotlib.figure import Figure

    for name in ("loss_curves", "loss_iterations", "confusion_matrix", "weights"):
        fig = run.figure(name)
        assert isinstance(fig, Figure) and fig._repr_png_().startswith(b"\x89PNG")
    assert run.figures() == ["loss_curves", "loss_iterations", "accuracy_curves", "confusion_matrix", "weights"]
    with pytest.raises(dlhw.RunError, match=r"unknown figure 'weight' \(did you mean 'weights'\?\)"):
        run.figure("weight")
    with pytest.raises(dlhw.RunError, match=r"nothing to draw 'grid_heatmaps' from \(grid.csv \(a grid run\)\)"):
        run.figure("grid_heatmaps")
    with pytest.raises(dlhw.RunError, match="run folder not found"):
        dlhw.load_run(tmp_path / "missing")


def test_figures_are_left_to_the_user(trained):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = trained.figure("loss_curves")
    assert plt.get_fignums() == before  # not in pyplot's list: shown once, never closed behind your back
    assert fig.axes and fig.axes[0].get_xlabel() == "epoch"


def test_importing_dlhw_and_its_plotting_code_leaves_the_backend_alone(trained):
    code = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")
        import dlhw, dlhw.report.plots, dlhw.report.plots_grid, dlhw.report.markdown, dlhw.report.compare
        dlhw.load_run({str(trained.path)!r}).figure("weights")
        print(matplotlib.get_backend())
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "svg"


# --------------------------------------------------------------------------- grids


GRID_SCRIPT = """\
import dlhw

g = dlhw.grid({{"name": "script", "data": {{"dir": {data!r}}},
               "train": {{"learning_rate": 0.1, "alpha": 0.0}},
               "grid": {{"batch_size": [1000, 2000], "epochs": [1]}}}},
              out={out!r}, jobs=2, progress={progress}, plots=False, scheduler={scheduler!r})
print("best", g.best["batch_size"], len(g.rows), round(g.retrained.metrics["test_accuracy"], 4))
"""


# progress=True: the ETA's calibration starts processes too; scheduler="local": a Dask LocalCluster's
@pytest.mark.parametrize("progress, scheduler", [(False, None), (True, None), (False, "local")])
def test_grid_from_a_script_without_a_main_guard(tmp_path, fashion_dir, progress, scheduler):
    script = tmp_path / "homework.py"
    script.write_text(GRID_SCRIPT.format(data=str(fashion_dir), out=str(tmp_path / "g"), progress=progress,
                                         scheduler=scheduler))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "in use by another dlhw process" not in r.stderr
    g = dlhw.load_run(tmp_path / "g")
    assert isinstance(g, dlhw.GridRun) and len(g.rows) == 2
    assert r.stdout.split() == ["best", str(g.best["batch_size"]), "2", str(round(g.metrics["test_accuracy"], 4))]
    assert g.retrained.metrics == g.metrics and g.best["n_settings"] == 2
    assert {r["batch_size"] for r in g.rows} == {1000, 2000}
    assert "chosen by val_ce" in g._repr_html_()
    assert g.figure("grid_heatmaps").axes
    executor = json.loads((tmp_path / "g" / "manifest.json").read_text())["grid"]["executor"]
    assert executor["kind"] == ("dask" if scheduler else "local") and executor["workers"] == 2


# --------------------------------------------------------------------------- progress bars


def test_progress_none_shows_bars_where_a_person_watches(monkeypatch):
    import types

    from dlhw import progress

    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    assert not progress.in_notebook()  # pytest is no Jupyter kernel
    assert [progress.bar(10, "x", enabled=e).disable for e in (None, True, False)] == [True, False, True]

    shell = types.SimpleNamespace(kernel=object())  # what a Jupyter (or Colab) kernel's shell has
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert progress.in_notebook() and progress.watched()
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed: tqdm's text bar
    assert progress._notebook_tqdm() is progress.text_tqdm
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    from tqdm.notebook import tqdm as widget_tqdm

    assert progress._notebook_tqdm() is widget_tqdm
