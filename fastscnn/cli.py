"""The ``fastscnn`` command: ``train``, ``evaluate``, ``predict``, ``import-weights``, ``benchmark``."""
import argparse
import json
import sys

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


def _parser():
    parser = argparse.ArgumentParser(prog="fastscnn", description="Fast-SCNN on minitorch-seg.")
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
    e.add_argument("--scales", type=parse_scales, default=(1.0,),
                   help="resize ratios whose probabilities are averaged, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")
    e.add_argument("--flip", action="store_true", help="also average the mirrored image's probabilities")
    e.add_argument("--sliding", type=parse_size, metavar="CROP",
                   help="sliding windows of N or HxW (stride 2/3 of it) instead of whole-image passes")

    p = sub.add_parser("predict", help="colour masks, overlays and labelId PNGs for images")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help="an image or a folder of images")
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


def main(argv=None):
    """Entry point of the ``fastscnn`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["benchmark"]:  # its own parser: python -m fastscnn.benchmark takes the same flags
        from fastscnn.benchmark import main as benchmark
        return benchmark(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "train":
        from fastscnn.train import TrainConfig, train
        cfg = TrainConfig(data_root=args.data_root, out=args.out, device=args.device, iters=args.iters,
                          epochs=args.epochs, batch_size=args.batch_size, crop_size=args.crop_size,
                          lr=args.lr, ohem=args.ohem, resume=args.resume, seed=args.seed,
                          eval_every=args.eval_every, log_every=args.log_every, workers=args.workers)
        metrics = train(cfg, progress=not args.no_progress)
        print(json.dumps({k: v for k, v in metrics.items() if k != "iou_per_class"}, indent=1))
        print(f"wrote {args.out}/metrics.json, curves.png, predictions.png, checkpoint.pkl, log.jsonl")
    elif args.command == "evaluate":
        from fastscnn.data.cityscapes import CityscapesDataset
        from fastscnn.evaluate import evaluate
        from fastscnn.predict import load_model
        device = _device(args.device)
        inference = None
        if args.flip or args.scales != (1.0,) or args.sliding:
            from fastscnn.inference import Inference
            inference = Inference(scales=args.scales, flip=args.flip, crop=args.sliding, progress=True)
        metrics = evaluate(load_model(args.checkpoint, device), CityscapesDataset(args.data_root, args.split),
                           device, NUM_CLASSES, inference)
        print(metrics.format_table())
    elif args.command == "predict":
        from fastscnn.predict import predict
        files = predict(args.checkpoint, args.input, args.output, _device(args.device))
        print(f"predicted {len(files)} image(s) into {args.output}/color, overlay, labelIds")
    elif args.command == "import-weights":
        from fastscnn.import_weights import import_weights
        model = import_weights(args.checkpoint, args.out, args.format)
        heads = ", ".join(name for name in ("aux_ltd", "aux_gfe") if hasattr(model, name)) or "none"
        print(f"imported {len(model.state_dict())} tensors ({args.format} variant, "
              f"{model.classifier.logits.weight.shape[0]} classes, auxiliary heads: {heads}) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
