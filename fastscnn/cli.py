"""The ``fastscnn`` command: ``train``, ``evaluate``, ``predict``, ``import-weights``, ``benchmark``.

Exit status: 0 done; 2 a user error (a bad flag, a missing or unreadable file, a diverged
run, images ``predict`` could not read), printed as one line on stderr with no traceback;
128 + the signal number when SIGINT/SIGTERM stopped a training run after saving it.
Any other exception is a bug and keeps its traceback.
"""
import argparse
import dataclasses
import json
import sys

from fastscnn.argtypes import parse_scales, parse_size
from fastscnn.errors import InputError, Interrupted, UserError, write_error
from fastscnn.palette import NUM_CLASSES


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage is one ``--help`` away, not repeated on each slip."""

    def error(self, message):
        """Print ``PROG: error: MESSAGE`` on one line and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser():
    from fastscnn.train import DEFAULTS, WORKERS

    parser = _Parser(prog="fastscnn", description="Fast-SCNN on minitorch-seg.")
    sub = parser.add_subparsers(dest="command", required=True)

    # Every train flag defaults to None, "not given": --resume must tell a flag the user
    # gave (checked against the checkpoint) from one left out (taken from the checkpoint).
    t = sub.add_parser("train", help="train (Cityscapes with --data-root, else generated SynthCity)",
                       description="Train Fast-SCNN. Unless noted, a default is the paper's recipe.")
    t.add_argument("--data-root", help="Cityscapes folder (leftImg8bit/, gtFine/); default: generate SynthCity")
    t.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    t.add_argument("--synth-train", type=int, help="SynthCity: training images to generate (default: per device)")
    t.add_argument("--synth-val", type=int, help="SynthCity: validation images to generate (default: per device)")
    t.add_argument("--synth-size", type=parse_size, metavar="HxW", help="SynthCity: image size (default: per device)")
    t.add_argument("--iters", type=int, help="training iterations (with --resume: a larger value extends the schedule)")
    t.add_argument("--epochs", type=int, help="training epochs, instead of --iters (Cityscapes default: 1000)")
    t.add_argument("--batch-size", type=int, help="images per iteration (Cityscapes default: 12)")
    t.add_argument("--crop-size", type=parse_size, help="N or HxW training crop (Cityscapes default: 1024)")
    t.add_argument("--lr", type=float, help=f"base learning rate, poly decay (default {DEFAULTS['lr']})")
    t.add_argument("--momentum", type=float, help=f"SGD momentum (default {DEFAULTS['momentum']})")
    t.add_argument("--weight-decay", type=float,
                   help=f"L2 on all but depthwise weights, BN and biases included (default {DEFAULTS['weight_decay']})")
    t.add_argument("--aux-weight", type=float, help=f"weight of each auxiliary loss (default {DEFAULTS['aux_weight']})")
    t.add_argument("--ohem", action="store_true", default=None, help="online hard example mining")
    t.add_argument("--ohem-thresh", type=float,
                   help=f"OHEM: pixels with p(true class) <= this are hard (default {DEFAULTS['ohem_thresh']})")
    t.add_argument("--ohem-min-kept", type=int,
                   help=f"OHEM: keep at least this many pixels per batch (default {DEFAULTS['ohem_min_kept']})")
    t.add_argument("--scale-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="random rescaling of training images (default 0.5 2)")
    t.add_argument("--out", default="runs/fastscnn", help="output folder (default: runs/fastscnn)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.pkl, with its settings")
    t.add_argument("--load-from", metavar="CHECKPOINT",
                   help="start a new run from this checkpoint's model weights (fine-tuning)")
    t.add_argument("--seed", type=int, help=f"data order, augmentation and initialisation (default {DEFAULTS['seed']})")
    t.add_argument("--eval-every", type=int, help="iterations between val evaluations (Cityscapes default: 1000)")
    t.add_argument("--checkpoint-every", type=int, help="iterations between checkpoints (Cityscapes default: 1000)")
    t.add_argument("--log-every", type=int,
                   help=f"iterations between log records, i.e. loss read-backs (default {DEFAULTS['log_every']})")
    t.add_argument("--workers", type=int, help=f"data loading threads (default {WORKERS['cpu']} on the CPU; "
                                                       f"beside a GPU one per core up to 8, here {WORKERS['cuda']})")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="score a checkpoint on a dataset's val split")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data-root", help="a Cityscapes-layout folder; default: the data the checkpoint trained on")
    e.add_argument("--split", default="val")
    e.add_argument("--device", choices=["cpu", "cuda"])
    e.add_argument("--json", action="store_true", help="print the scores as JSON (null for an absent class)")
    e.add_argument("--scales", type=parse_scales, default=(1.0,),
                   help="resize ratios whose probabilities are averaged, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")
    e.add_argument("--flip", action="store_true", help="also average the mirrored image's probabilities")
    e.add_argument("--sliding", type=parse_size, metavar="CROP",
                   help="sliding windows of N or HxW (stride 2/3 of it) instead of whole-image passes")

    p = sub.add_parser("predict", help="colour masks, overlays and labelId PNGs for images")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", help="an image or a folder of images (subfolders are mirrored); "
                                   "default: the val images of the data the checkpoint trained on")
    p.add_argument("--output", required=True)
    p.add_argument("--device", choices=["cpu", "cuda"])

    w = sub.add_parser("import-weights", help="convert a published PyTorch Fast-SCNN checkpoint (needs torch)")
    w.add_argument("checkpoint", help="the .pth file")
    w.add_argument("--format", required=True, choices=["mmseg", "tramac"],
                   help="mmseg: mmsegmentation's checkpoint; tramac: Tramac/Fast-SCNN-pytorch's")
    w.add_argument("--out", required=True, help="the file to write, for evaluate/predict --checkpoint")

    sub.add_parser("benchmark", add_help=False,
                   help="speed and memory against PyTorch (fastscnn benchmark --help for its flags)")
    return parser


def _device(name):
    from fastscnn.train import usable_device
    return usable_device(name)


def _train(args):
    from fastscnn.metrics import strict_json
    from fastscnn.train import TrainConfig, train
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)})
    metrics = train(cfg, progress=not args.no_progress)
    print(json.dumps(strict_json({k: v for k, v in metrics.items() if not k.startswith("iou_per")}), indent=1))
    print(f"wrote {args.out}/metrics.json, curves.png, predictions.png, checkpoint.pkl, best.pkl, log.jsonl")
    return 0


def _recorded_data_root(checkpoint, flag):
    """The data folder that the training checkpoint ``checkpoint`` recorded (SynthCity is
    generated again if it is gone), for a command run without ``flag``; where it is goes to
    stderr. InputError for a checkpoint that records none (e.g. one from import-weights)."""
    from fastscnn.predict import read_checkpoint
    from fastscnn.train import data_root
    stored = read_checkpoint(checkpoint)
    config = stored.get("config") if isinstance(stored, dict) else None
    if not config:
        raise InputError(f"{flag}: needed, as {checkpoint} records no data (only fastscnn train's checkpoints do)")
    return data_root(config, say=lambda line: print(line, file=sys.stderr))


def _evaluate(args):
    from fastscnn.data.cityscapes import CityscapesDataset
    from fastscnn.evaluate import evaluate
    from fastscnn.metrics import to_json
    from fastscnn.predict import load_model
    device = _device(args.device)
    root = args.data_root or _recorded_data_root(args.checkpoint, "--data-root")
    dataset = CityscapesDataset(root, args.split)
    inference = None
    if args.flip or args.scales != (1.0,) or args.sliding:
        from fastscnn.inference import Inference
        inference = Inference(scales=args.scales, flip=args.flip, crop=args.sliding, progress=True)
    metrics = evaluate(load_model(args.checkpoint, device), dataset, device, NUM_CLASSES, inference,
                       progress=True)
    print(to_json(metrics.compute(), indent=1) if args.json else metrics.format_table())
    return 0


def _predict(args):
    from fastscnn.predict import predict
    device = _device(args.device)
    images = args.input or _recorded_data_root(args.checkpoint, "--input") / "leftImg8bit" / "val"
    try:
        written, failed = predict(args.checkpoint, images, args.output, device, progress=True)
    except OSError as e:
        raise write_error(e, "--output", args.output) or e
    for message in failed:
        print(f"fastscnn predict: error: {message}", file=sys.stderr)
    into = f" into {args.output}/color, overlay, labelIds" if written else "; nothing written"
    print(f"predicted {len(written)} of {len(written) + len(failed)} image(s){into}")
    return 2 if failed else 0


def _import_weights(args):
    from fastscnn.import_weights import import_weights
    model = import_weights(args.checkpoint, args.out, args.format)
    heads = ", ".join(name for name in ("aux_ltd", "aux_gfe") if hasattr(model, name)) or "none"
    print(f"imported {len(model.state_dict())} tensors ({args.format} variant, "
          f"{model.classifier.logits.weight.shape[0]} classes, auxiliary heads: {heads}) into {args.out}")
    return 0


def main(argv=None):
    """Entry point of the ``fastscnn`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["benchmark"]:  # its own parser: python -m fastscnn.benchmark takes the same flags
        from fastscnn.benchmark import main as benchmark
        return benchmark(argv[1:])
    args = _parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "predict": _predict,
               "import-weights": _import_weights}[args.command]
    try:
        return command(args)
    except UserError as e:
        print(f"fastscnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"fastscnn {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C
        print(f"fastscnn {args.command}: interrupted at once; the last checkpoint written is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
