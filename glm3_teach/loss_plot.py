"""Loss plots of a training run: ``LivePlot`` redrawn in a notebook, ``plot_history`` saved.

Taught in lesson 06 (预训练 Pretraining), whose runs draw their training and validation
losses while they train; ``python -m glm3_teach.train`` saves ``loss_curve.png`` beside the
exported model, and lesson 08's SFT runs do the same. ``glm3_teach.train`` re-exports both.

What it leaves out: logging services (TensorBoard, Weights & Biases) and smoothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LivePlot:
    """A loss plot redrawn in place in a notebook (train loss per step, validation loss)."""

    def __init__(self, title: str = "loss"):
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.figure, self.axes = plt.subplots(figsize=(7, 3.5))
        self.title = title
        self.handle = display(self.figure, display_id=True)
        plt.close(self.figure)

    def draw(self, history: dict[str, Any]) -> None:
        ax = self.axes
        ax.clear()
        ax.plot(history["step"], history["loss"], label="train", lw=1)
        if history["val_step"]:
            ax.plot(history["val_step"], history["val_loss"], "o-", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(self.title)
        ax.legend()
        self.handle.update(self.figure)


def plot_history(history: dict[str, Any], path: str | Path | None = None, title: str = "loss"):
    """A static figure of a run's losses; saved to ``path`` when given. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(history["step"], history["loss"], label="train", lw=1)
    if history["val_step"]:
        ax.plot(history["val_step"], history["val_loss"], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.legend()
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig
