"""notebooks/names.ipynb runs from top to bottom (nbclient), as a reader would run it."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import REPO, need


def test_the_names_notebook_runs(tmp_path: Path) -> None:
    nbformat = need("nbformat")
    nbclient = need("nbclient")
    for module in ("ipykernel", "matplotlib", "sklearn", "tqdm", "pandas"):
        need(module)
    path = REPO / "notebooks" / "names.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "the notebook is committed with its outputs cleared"
    # The notebook writes its run next to itself: run a copy from a scratch folder that has
    # ../shared beside it as the repository has.
    work = tmp_path / "notebooks"
    work.mkdir()
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    assert "val loss" in outputs or "loss" in outputs
