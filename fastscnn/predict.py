"""Prediction on images: colour masks, overlays, and labelId PNGs for the official evaluation.

For every input image ``NAME.png`` (or .jpg) it writes::

    OUTPUT/color/NAME.png      the prediction in the Cityscapes palette
    OUTPUT/overlay/NAME.png    the image blended with the colour mask
    OUTPUT/labelIds/NAME.png   the prediction as Cityscapes labelIds (uint8)

``OUTPUT/labelIds`` is what cityscapesscripts' ``evalPixelLevelSemanticLabeling`` reads
(``CITYSCAPES_RESULTS``): it finds each ground truth's prediction by the city_seq_frame part
of the file name, which the input names keep.
"""
from pathlib import Path

import numpy as np
from PIL import Image

import minitorch_seg as mts
from fastscnn.evaluate import predict_train_ids
from fastscnn.model import FastSCNN
from fastscnn.palette import NUM_CLASSES, TRAIN_ID_TO_LABEL_ID, colorize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_model(checkpoint, device="cpu"):
    """A FastSCNN in eval mode with the weights of a training checkpoint, a bare state_dict, or
    a file written by ``fastscnn import-weights`` (which also names the architecture variant)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    state = mts.load(path)
    variant = state.get("variant", "paper") if isinstance(state, dict) else "paper"
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or "classifier.logits.weight" not in state:
        raise ValueError(f"checkpoint: {path} holds no Fast-SCNN weights (expected a training "
                         f"checkpoint or a state_dict)")
    num_classes = state["classifier.logits.weight"].shape[0]
    model = FastSCNN(num_classes, aux=any(k.startswith("aux_") for k in state), variant=variant)
    model.load_state_dict(state)
    return model.to(device).eval()


def input_images(path):
    """The image files at ``path``: the file itself, or every image below a folder, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input: no file or folder at {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"input: no .png/.jpg images under {path}")
    return files


def predict(checkpoint, input, output, device="cpu", alpha=0.5):
    """Predict every image of ``input`` with the model of ``checkpoint`` and write ``output``."""
    model = load_model(checkpoint, device)
    output = Path(output)
    for sub in ("color", "overlay", "labelIds"):
        (output / sub).mkdir(parents=True, exist_ok=True)
    files = input_images(input)
    for f in files:
        try:
            image = np.asarray(Image.open(f).convert("RGB"))
        except OSError as e:
            raise ValueError(f"input: cannot read {f} as an image ({e})") from e
        train_ids = predict_train_ids(model, image, device)
        color = colorize(train_ids)
        name = f.stem + ".png"
        Image.fromarray(color).save(output / "color" / name)
        blend = (image * (1 - alpha) + color * alpha).astype(np.uint8)
        Image.fromarray(blend).save(output / "overlay" / name)
        Image.fromarray(TRAIN_ID_TO_LABEL_ID[np.minimum(train_ids, NUM_CLASSES - 1)]).save(output / "labelIds" / name)
    return files
