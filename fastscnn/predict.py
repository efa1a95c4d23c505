"""Prediction on images: colour masks, overlays, and labelId PNGs for the official evaluation.

For every input image ``SUB/NAME.png`` (or .jpg) below the input folder it writes::

    OUTPUT/color/SUB/NAME.png      the prediction in the Cityscapes palette
    OUTPUT/overlay/SUB/NAME.png    the image blended with the colour mask
    OUTPUT/labelIds/SUB/NAME.png   the prediction as Cityscapes labelIds (uint8)

The subfolders mirror the input's, so ``a/X.png`` and ``b/X.png`` stay two predictions.
An image that cannot be read is skipped and reported; the others are still predicted.

``OUTPUT/labelIds`` is what cityscapesscripts' ``evalPixelLevelSemanticLabeling`` reads
(``CITYSCAPES_RESULTS``, searched recursively): it finds each ground truth's prediction by
the city_seq_frame part of the file name, which the input names keep. Point it at
``labelIds`` only: ``color`` and ``overlay`` hold files of the same names (README,
"Official evaluation").
"""
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

import minitorch_seg as mts
from fastscnn.data.cityscapes import read_png
from fastscnn.errors import InputError, InputNotFoundError, UnreadableImageError
from fastscnn.evaluate import predict_train_ids
from fastscnn.model import FastSCNN
from fastscnn.palette import NUM_CLASSES, TRAIN_ID_TO_LABEL_ID, colorize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_checkpoint(path, flag="--checkpoint"):
    """The object stored in a checkpoint file; the errors name ``flag`` and the file.

    InputNotFoundError when there is no file, InputError when it cannot be unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{flag}: no file at {path}")
    try:
        return mts.load(path)
    except Exception as e:  # unpickling arbitrary bytes can raise almost any exception
        why = " ".join(str(e).split())  # one line: some of these messages hold newlines
        raise InputError(f"{flag}: {path} is not a checkpoint ({type(e).__name__}: {why})") from e


def model_weights(state, path, flag="--checkpoint"):
    """The Fast-SCNN state_dict in ``state`` (a training checkpoint or a bare state_dict)."""
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or "classifier.logits.weight" not in state:
        raise InputError(f"{flag}: {path} holds no Fast-SCNN weights (expected a training "
                         f"checkpoint or a state_dict)")
    return state


def load_model(checkpoint, device="cpu"):
    """A FastSCNN in eval mode with the weights of a training checkpoint, a bare state_dict, or
    a file written by ``fastscnn import-weights`` (which also names the architecture variant)."""
    stored = read_checkpoint(checkpoint)
    variant = stored.get("variant", "paper") if isinstance(stored, dict) else "paper"
    state = model_weights(stored, checkpoint)
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
        raise InputNotFoundError(f"--input: no file or folder at {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputNotFoundError(f"--input: no .png/.jpg images under {path}")
    return files


def output_names(files, input):
    """The output path of each input file, relative to an output subfolder: the input's
    subfolders mirrored, the suffix ``.png``; InputError when two files would share one."""
    root = Path(input) if Path(input).is_dir() else Path(input).parent
    names = {}
    for f in files:
        name = f.relative_to(root).with_suffix(".png")
        if name in names:
            raise InputError(f"--input: {names[name]} and {f} would both be written as {name}")
        names[name] = f
    return list(names)


def predict(checkpoint, input, output, device="cpu", alpha=0.5, progress=False):
    """Predict every image of ``input`` with the model of ``checkpoint`` into ``output``.

    Returns ``(written, failed)``: the input files predicted, and one message per file
    that could not be read (naming it). Folders are created only for what is written.
    ``progress`` shows a progress bar on stderr in a terminal.
    """
    model = load_model(checkpoint, device)
    files = input_images(input)
    names = output_names(files, input)
    output = Path(output)
    written, failed = [], []
    for f, name in tqdm(list(zip(files, names)), desc="predict", disable=None if progress else True):
        try:
            image = read_png(f, "RGB")
        except UnreadableImageError as e:
            failed.append(str(e))
            continue
        train_ids = predict_train_ids(model, image, device)
        color = colorize(train_ids)
        blend = (image * (1 - alpha) + color * alpha).astype(np.uint8)
        label_ids = TRAIN_ID_TO_LABEL_ID[np.minimum(train_ids, NUM_CLASSES - 1)]
        for sub, array in (("color", color), ("overlay", blend), ("labelIds", label_ids)):
            (output / sub / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(output / sub / name)
        written.append(f)
    return written, failed
