"""The ``fastscnn`` command: ``train``, ``evaluate``, ``predict``, ``import-weights``, ``benchmark``.

Exit status: 0 done; 2 a user error (a bad flag, a missing or unreadable file, images
``predict`` could not read), printed as one line on stderr with no traceback. Any other
exception is a bug and keeps its traceback.
"""
import argparse
import json
import sys

from fastscnn.errors import UserError
from fastscnn.palette import NUM_CLASSES


def parse_size(text):
    """``512`` -> (512, 512); ``512x1024`` -> (512, 1024)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts, default=0) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive integers, got {text!r}")
    return (parts[0], parts[-1])


def parse_scales(text):
    """``0.5,1.0,1.5`` -> (0.5, 1.0, 1.5): positive resize ratios."""
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        scales = ()
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return scales


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage is one ``--help`` away, not repeated on each slip."""

    def error(self, message):
        """Print ``PROG: error: MESSAGE`` on one line and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser():
    parser = _Parser(prog="fastscnn", description="Fast-SCNN on minitorch-seg.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (Cityscapes with --data-root, else generated SynthCity)")
    t.add_argument("--data-root", help="Cityscapes folder (leftImg8bit/, gtFine/); default: generate SynthCity")
    t.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    t.add_argument("--iters", type=int, help="training iterations")
    t.add_argument("--epochs", type=int, help="training epochs (instead of --iters)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--crop-size", type=parse_size, help="N or HxW")
    t.add_argument("--lr", type=float, default=0.045)
    t.add_argument("--ohem", action="store_true", help="online hard example mining (p < 0.7)")
    t.add_argument("--out", default="runs/fastscnn", help="output folder (default: runs/fastscnn)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pkl")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=int, help="iterations between evaluations")
    t.add_argument("--log-every", type=int, default=10, help="iterations between loss read-backs")
    t.add_argument("--workers", type=int, default=2, help="data loading threads")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="score a checkpoint on a dataset's val split")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data-root", required=True)
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
    p.add_argument("--input", required=True, help="an image or a folder of images (subfolders are mirrored)")
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
    import minitorch_seg as mts
    return name or mts.cuda.default_device()


def _train(args):
    from fastscnn.train import TrainConfig, train
    cfg = TrainConfig(data_root=args.data_root, out=args.out, device=args.device, iters=args.iters,
                      epochs=args.epochs, batch_size=args.batch_size, crop_size=args.crop_size,
                      lr=args.lr, ohem=args.ohem, resume=args.resume, seed=args.seed,
                      eval_every=args.eval_every, log_every=args.log_every, workers=args.workers)
    metrics = train(cfg, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in metrics.items() if k != "iou_per_class"}, indent=1))
    print(f"wrote {args.out}/metrics.json, curves.png, predictions.png, checkpoint.pkl, log.jsonl")
    return 0


def _evaluate(args):
    from fastscnn.data.cityscapes import CityscapesDataset
    from fastscnn.evaluate import evaluate
    from fastscnn.metrics import to_json
    from fastscnn.predict import load_model
    device = _device(args.device)
    dataset = CityscapesDataset(args.data_root, args.split)
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
    written, failed = predict(args.checkpoint, args.input, args.output, _device(args.device), progress=True)
    for message in failed:
        print(f"fastscnn predict: error: {message}", file=sys.stderr)
    print(f"predicted {len(written)} of {len(written) + len(failed)} image(s) into "
          f"{args.output}/color, overlay, labelIds")
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


if __name__ == "__main__":
    sys.exit(main())
