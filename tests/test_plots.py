"""Figures are written whole and as palette PNGs (the committed results keep to their size budget)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from lib.study import plots  # noqa: E402


def test_save_writes_a_palette_png_that_looks_like_the_figure(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    rng = np.random.default_rng(0)
    ax.scatter(*rng.normal(size=(2, 500)), c=rng.integers(0, 6, 500), cmap="tab10", alpha=0.6)
    plots.save(fig, tmp_path / "fig.png")
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temp file left
    fig.savefig(tmp_path / "plain.png", dpi=110, bbox_inches="tight")
    with Image.open(tmp_path / "fig.png") as small, Image.open(tmp_path / "plain.png") as plain:
        assert small.mode == "P" and small.size == plain.size
        gap = np.abs(np.asarray(small.convert("RGB"), float) - np.asarray(plain.convert("RGB"), float))
    assert gap.mean() < 2.0  # on a 0-255 scale: the palette keeps the picture
    assert (tmp_path / "fig.png").stat().st_size < (tmp_path / "plain.png").stat().st_size


def test_notebook_images_become_palette_pngs_and_the_rest_is_untouched(tmp_path):
    import base64
    import io

    import nbformat

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("plot()", outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(buffer.getvalue()).decode(),
                                                     "text/plain": "<Figure>"}),
        nbformat.v4.new_output("stream", name="stdout", text="macro-F1 0.776\n")])]
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    assert plots.palette_notebook_images(path) == 1
    back = nbformat.read(path, as_version=4)
    outputs = back.cells[0].outputs
    with Image.open(io.BytesIO(base64.b64decode(outputs[0].data["image/png"]))) as image:
        assert image.mode == "P"
    assert outputs[0].data["text/plain"] == "<Figure>" and outputs[1].text == "macro-F1 0.776\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ipynb"]
