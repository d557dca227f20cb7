"""Every notebook in examples/ runs offline, top to bottom, without an error.

Why a subprocess, and a kernel on unix sockets:

- The notebook is executed by this file run as a script, in a subprocess of the test, so that
  nbclient's event loop and jupyter's own warnings stay out of pytest's process (warnings are
  errors here) and pytest-socket's patch of this process does not apply to it.
- The kernel talks to the client over ``ipc`` (unix domain sockets) instead of TCP on localhost:
  no port is opened, not even a local one, and none has to be found free. The runner and the
  kernel then block every socket but unix ones with pytest-socket's ``disable_socket``, as pytest
  does for the other tests, so a notebook that reaches for the network fails here.
- The kernel is this interpreter: a ``python3`` kernelspec naming ``sys.executable`` is written to
  a temporary ``JUPYTER_PATH``, which comes before the user's and the system's kernelspecs, and a
  first cell (added to the in-memory copy only) checks the kernel's ``sys.prefix``.

Nothing is written into the repository: connection files, IPython's profile and the kernelspec
live in pytest's temporary directory, and the notebook is read, never saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
CELL_TIMEOUT = 300
"""Seconds one cell may run."""
RUN_TIMEOUT = 900
"""Seconds one notebook may run, kernel start included."""

# Runs in the kernel before the notebook's first cell.
KERNEL_GUARD = """\
import sys
import pytest_socket
assert sys.prefix == {prefix!r}, f"the kernel runs {{sys.executable}}, not this venv's Python"
pytest_socket.disable_socket(allow_unix_socket=True)
"""


@pytest.mark.slow
@pytest.mark.model  # the example notebooks load the embedded MiniLM
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(notebook: Path, tmp_path: Path) -> None:
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (windowkeeper tests)",
        "language": "python",
    }
    (kernels / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    env = {
        **os.environ,
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "MPLBACKEND": "agg",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
    }
    out = subprocess.run(
        [sys.executable, __file__, str(notebook), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, f"{notebook.name} failed:\n{out.stdout}\n{out.stderr}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    stored = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not stored, f"{notebook.name}: cells {stored} hold outputs; clear them before saving"


def run(notebook: Path, workdir: Path) -> None:
    """Execute ``notebook`` in a kernel of this interpreter; raise on the first failing cell."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from pytest_socket import disable_socket

    disable_socket(allow_unix_socket=True)
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(KERNEL_GUARD.format(prefix=sys.prefix)))
    # ip is the path prefix of the kernel's unix sockets (default: "kernel-ipc" in the cwd)
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(workdir / "kernel"))
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(notebook.parent)}},  # the kernel's cwd
    )
    client.execute()


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]))
