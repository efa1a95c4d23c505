"""Pictures of a run: the training curves and a grid of input / ground truth / prediction."""
import matplotlib.pyplot as plt

from fastscnn.evaluate import predict_train_ids
from fastscnn.palette import colorize


def plot_curves(history, path):
    """Plot loss, learning rate and validation mIoU against the iteration into ``path`` (PNG)."""
    steps = [r for r in history if "loss" in r]
    evals = [r for r in history if "miou" in r]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot([r["iter"] for r in steps], [r["loss"] for r in steps])
    axes[0].set(title="training loss", xlabel="iteration", yscale="log")
    axes[1].plot([r["iter"] for r in steps], [r["lr"] for r in steps])
    axes[1].set(title="learning rate (poly 0.9)", xlabel="iteration")
    axes[2].plot([r["iter"] for r in evals], [r["miou"] for r in evals], marker="o")
    axes[2].set(title="validation mIoU", xlabel="iteration", ylim=(0, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def prediction_grid(model, dataset, device, path, count=4):
    """Save a grid: one row per image of ``dataset`` (the first ``count``), input | truth | prediction."""
    count = min(count, len(dataset))
    fig, axes = plt.subplots(count, 3, figsize=(12, 2.2 * count), squeeze=False)
    for row in range(count):
        image, label = dataset[row]
        panels = (image, colorize(label), colorize(predict_train_ids(model, image, device)))
        for ax, panel, title in zip(axes[row], panels, ("input", "ground truth", "prediction")):
            ax.imshow(panel)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
