"""The Frozen Lake notebook runs headless from top to bottom with small settings."""

from __future__ import annotations


def test_frozen_lake_notebook_executes(execute) -> None:
    outputs = execute("frozen_lake.ipynb")
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 5  # preference, value, explored, training-curve and why figures
    text = "".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs)
    assert "MSE" in text and "ift" in text  # the comparison table (its headers wrap at the notebook width)
