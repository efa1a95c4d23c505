"""Training Fast-SCNN with the paper's recipe, resumable bit for bit.

The recipe (Poudel et al. 2019, section 4.1) is the default: SGD with momentum 0.9, weight
decay 4e-5 (not on depthwise weights), learning rate 0.045 decayed per iteration by the poly
rule with power 0.9, batch 12 of 1024x1024 crops, random scale 0.5-2, crop, flip, brightness
and channel noise, auxiliary losses weighted 0.4 on the learning-to-downsample and global
feature extractor outputs. Without a Cityscapes folder it generates SynthCity and picks a
size and schedule that suit the device (:func:`resolve`).

Everything that decides the next iteration lives in the checkpoint: model and optimizer
state, the schedule, the iteration and the package's RNG state. The data order and the
augmentation of each sample depend only on (seed, epoch, index), so a resumed run repeats
exactly what the uninterrupted run would have done.
"""
import dataclasses
import json
import math
import time
from pathlib import Path

from tqdm import tqdm

import minitorch_seg as mts
from fastscnn.data.cityscapes import CityscapesDataset
from fastscnn.data.loader import DataLoader
from fastscnn.data.synthetic import generate_synthcity
from fastscnn.data.transforms import TrainTransform
from fastscnn.evaluate import evaluate
from fastscnn.losses import SegmentationLoss
from fastscnn.model import FastSCNN
from fastscnn.palette import NUM_CLASSES
from fastscnn import visualize

CHECKPOINT = "checkpoint.pkl"

# SynthCity presets: (images train/val, image size, crop, batch, iterations, eval every).
SYNTH_PRESETS = {
    "cpu": dict(synth_train=240, synth_val=40, synth_size=(192, 384), crop_size=(192, 192),
                batch_size=4, iters=3200, eval_every=800),
    "cuda": dict(synth_train=1500, synth_val=100, synth_size=(512, 1024), crop_size=(512, 512),
                 batch_size=12, iters=4000, eval_every=500),
}


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a run; ``None`` means "the default for this data and device" (:func:`resolve`)."""

    data_root: str = None
    out: str = "runs/fastscnn"
    device: str = None
    iters: int = None
    epochs: int = None
    batch_size: int = None
    crop_size: tuple = None
    lr: float = 0.045
    momentum: float = 0.9
    weight_decay: float = 4e-5
    power: float = 0.9
    aux_weight: float = 0.4
    ohem: bool = False
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100_000
    eval_every: int = None
    log_every: int = 10
    checkpoint_every: int = None
    seed: int = 0
    workers: int = 2
    resume: bool = False
    synth_root: str = None
    synth_train: int = None
    synth_val: int = None
    synth_size: tuple = None


def resolve(cfg):
    """Fill every ``None`` of ``cfg`` for its data and device; returns a new TrainConfig."""
    c = dataclasses.replace(cfg)
    c.device = c.device or mts.cuda.default_device()
    c.device = mts.backend.check_device(c.device)
    if c.data_root is None:
        for key, value in SYNTH_PRESETS[c.device].items():
            if getattr(c, key) is None and not (key == "iters" and c.epochs is not None):
                setattr(c, key, value)
        h, w = c.synth_size
        c.synth_root = c.synth_root or f"data/synthcity-{c.synth_train}-{c.synth_val}-{h}x{w}-s{c.seed}"
    else:
        c.batch_size = c.batch_size or 12
        c.crop_size = c.crop_size or (1024, 1024)
        if c.iters is None and c.epochs is None:
            c.epochs = 1000  # the paper's schedule
    c.crop_size = tuple(c.crop_size) if not isinstance(c.crop_size, int) else (c.crop_size,) * 2
    for name in ("batch_size", "log_every", "workers"):
        if getattr(c, name) < (0 if name == "workers" else 1):
            raise ValueError(f"{name}: expected a positive integer, got {getattr(c, name)}")
    return c


def datasets(cfg):
    """The (train, val) datasets of a resolved config, generating SynthCity when needed."""
    root = cfg.data_root
    if root is None:
        root = generate_synthcity(cfg.synth_root, cfg.synth_train, cfg.synth_val, cfg.synth_size, cfg.seed)
    return CityscapesDataset(root, "train"), CityscapesDataset(root, "val")


def param_groups(model, weight_decay):
    """Two SGD groups: weight decay on every parameter except depthwise conv weights."""
    depthwise = {id(m.weight) for m in model.modules()
                 if isinstance(m, mts.nn.Conv2d) and m.groups > 1}
    decay = [p for p in model.parameters() if id(p) not in depthwise]
    no_decay = [p for p in model.parameters() if id(p) in depthwise]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _read_log(path, until):
    """Records of a JSONL log up to iteration ``until`` (later ones were not checkpointed)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["iter"] <= until]


def _write_json(path, obj):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


def train(cfg, progress=True):
    """Run (or resume) training as configured; returns the final metrics dict.

    Writes into ``cfg.out``: ``log.jsonl`` (one record per logged iteration and evaluation),
    ``checkpoint.pkl`` (atomic), ``curves.png``, ``metrics.json`` and ``predictions.png``.
    """
    cfg = resolve(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    mts.manual_seed(cfg.seed)
    train_set, val_set = datasets(cfg)
    loader = DataLoader(train_set, cfg.batch_size, shuffle=True, transform=TrainTransform(cfg.crop_size),
                        seed=cfg.seed, num_workers=cfg.workers, drop_last=True)
    if len(loader) == 0:
        raise ValueError(f"batch_size: {cfg.batch_size} is larger than the {len(train_set)} training images")
    max_iters = cfg.iters if cfg.iters is not None else cfg.epochs * len(loader)
    eval_every = cfg.eval_every or max_iters
    checkpoint_every = cfg.checkpoint_every or eval_every

    model = FastSCNN(NUM_CLASSES, aux=True).to(cfg.device)
    optimizer = mts.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = mts.optim.PolyLR(optimizer, max_iters, cfg.power)
    criterion = SegmentationLoss(cfg.aux_weight, cfg.ohem, cfg.ohem_thresh, cfg.ohem_min_kept)
    start, elapsed = 0, 0.0
    ckpt_path, log_path = out / CHECKPOINT, out / "log.jsonl"
    if cfg.resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"resume: no checkpoint at {ckpt_path}")
        state = mts.load(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        mts.set_rng_state(state["rng"])
        start, elapsed = state["iter"], state["seconds"]
    history = _read_log(log_path, start)
    with open(log_path.with_suffix(".tmp"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in history)
    log_path.with_suffix(".tmp").replace(log_path)

    def checkpoint(it):
        mts.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "rng": mts.get_rng_state(), "iter": it,
                  "seconds": elapsed + time.perf_counter() - t0, "config": dataclasses.asdict(cfg)},
                 ckpt_path)

    t0 = time.perf_counter()
    it, scores = start, None
    bar = tqdm(total=max_iters, initial=start, disable=not progress, dynamic_ncols=True, desc="train")
    with open(log_path, "a") as log:
        def record(entry):
            history.append(entry)
            log.write(json.dumps(entry) + "\n")
            log.flush()

        window_t, window_n = time.perf_counter(), 0
        while it < max_iters:
            epoch, offset = divmod(it, len(loader))
            loader.set_epoch(epoch)
            for x, y in loader.iterate(start=offset):
                model.train()
                outputs = model(mts.tensor(x, device=cfg.device))
                loss = criterion(outputs, mts.backend.to_device(y, cfg.device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                it += 1
                window_n += len(x)
                bar.update(1)
                if it % cfg.log_every == 0 or it == max_iters:
                    value = loss.item()  # the only read-back from the device in the loop
                    if not math.isfinite(value):
                        raise FloatingPointError(f"loss became {value} at iteration {it}; lower --lr")
                    speed = window_n / (time.perf_counter() - window_t)
                    window_t, window_n = time.perf_counter(), 0
                    record({"iter": it, "epoch": epoch, "loss": value, "lr": lr, "images_per_s": speed})
                    bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.4f}", img_s=f"{speed:.1f}")
                if it % eval_every == 0 or it == max_iters:
                    scores = evaluate(model, val_set, cfg.device).compute()
                    record({"iter": it, "miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"]})
                    bar.write(f"iter {it}: val mIoU {scores['miou']:.3f}, pixel acc {scores['pixel_accuracy']:.3f}")
                if it % checkpoint_every == 0 or it == max_iters:
                    checkpoint(it)
                if it >= max_iters:
                    break
    bar.close()
    seconds = elapsed + time.perf_counter() - t0
    final = scores if scores is not None else evaluate(model, val_set, cfg.device).compute()
    metrics = {"miou": final["miou"], "pixel_accuracy": final["pixel_accuracy"],
               "category_miou": final.get("category_miou"), "iou_per_class": final["iou_per_class"],
               "iterations": it, "seconds": seconds, "device": cfg.device}
    _write_json(out / "metrics.json", metrics)
    visualize.plot_curves(history, out / "curves.png")
    visualize.prediction_grid(model, val_set, cfg.device, out / "predictions.png")
    return metrics
