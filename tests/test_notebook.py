"""The example notebook, executed in a real Jupyter kernel on the real data: its outputs are checked."""
import json
import re
import sys
from pathlib import Path

import nbclient  # the test extra: nbclient, nbformat, ipykernel
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "homework.ipynb"


def _kernel_here(root: Path) -> None:
    """A `python3` kernel spec that runs this interpreter (found first through $JUPYTER_PATH)."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))


@pytest.fixture(scope="module")
def executed(tmp_path_factory, fashion_dir):
    work = tmp_path_factory.mktemp("notebook")
    _kernel_here(work / "jupyter")
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(work / "jupyter"))
    mp.setenv("IPYTHONDIR", str(work / "ipython"))
    mp.setenv("DLHW_DATA", str(fashion_dir))
    mp.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend, as in Jupyter
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}}).execute()
    finally:
        mp.undo()
    return nb, work


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def test_notebook_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_notebook_runs_in_a_kernel_and_shows_its_results(executed):
    nb, work = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    one = json.loads((work / "results" / "softmax_nb" / "metrics.json").read_text())
    printed = next(_text(c) for c in code if "test accuracy" in _text(c))
    assert printed.strip() == f"test accuracy {one['test_accuracy']:.2%}, test CE {one['test_ce']:.4f}"
    assert any("text/html" in o.get("data", {}) and "<table>" in o["data"]["text/html"]
               for c in code for o in c.outputs)  # a Run's summary table
    pngs = [c for c in code if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(pngs) >= 3  # loss curves, weights, grid heatmaps: each shown once, inline
    assert all(sum("image/png" in o.get("data", {}) for o in c.outputs) == 1 for c in pngs)

    grid = json.loads((work / "results" / "softmax_nb_grid" / "metrics.json").read_text())
    best = json.loads((work / "results" / "softmax_nb_grid" / "best.json").read_text())
    out = "".join(_text(c) for c in code)
    assert f"retrained test accuracy {grid['test_accuracy']:.2%}" in out
    assert re.search(rf"best: {{'batch_size': {best['batch_size']}, ", out)
    assert f"GridRun with 24 settings; predict on the raw test images: {grid['test_accuracy']:.2%}" in out
    assert "same as recorded: True" in out
    bars = "".join(o.get("text", "") for c in code for o in c.outputs if o.get("name") == "stderr")
    assert "train softmax_nb:" in bars and "grid softmax_nb_grid:" in bars  # progress=None: shown in a kernel
