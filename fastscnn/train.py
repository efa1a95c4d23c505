"""Training Fast-SCNN with the paper's recipe: resumable bit for bit, and never losing work.

The recipe (Poudel et al. 2019, section 4.1) is the default: SGD with momentum 0.9, weight
decay 4e-5 (not on depthwise weights, see :func:`param_groups`), learning rate 0.045 decayed
per iteration by the poly rule with power 0.9, batch 12 of 1024x1024 crops, random scale
0.5-2, crop, flip, brightness and channel noise, auxiliary losses weighted 0.4 on the
learning-to-downsample and global feature extractor outputs. Without a Cityscapes folder it
generates SynthCity and picks a size and schedule that suit the device (:func:`resolve`).

Everything that decides the next iteration lives in the checkpoint: model and optimizer
state, the schedule, the iteration, the package's RNG state and the configuration. The
data order and the augmentation of each sample depend only on (seed, epoch, index), so a
resumed run repeats exactly what the uninterrupted run would have done.

What a run writes into ``out``, and when::

    every --log-every iterations   log.jsonl gets a record (after checking the loss is finite)
    every --checkpoint-every       checkpoint.pkl (the last state; atomic, finite or not at all)
    every --eval-every             checkpoint.pkl first, then the val evaluation; best.pkl
                                   (a copy of that checkpoint) when its mIoU is the best yet
    on SIGINT / SIGTERM            finish the iteration, write checkpoint.pkl, stop
    at the end                     metrics.json, curves.png, predictions.png

Where the data is: Cityscapes where ``--data-root`` says; SynthCity in :func:`data_home`
(``$MTS_DATA``, else the user's cache folder), generated there once. The checkpoint records
the data's absolute location and SynthCity's settings, so ``--resume`` from any folder, and
``fastscnn evaluate`` or ``predict`` without ``--data-root``, find the same data.

Per iteration nothing is read back from the device: the step folds "was the loss finite"
into a flag on the device (:func:`train_step`), read at log time and before every save.
"""
import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import minitorch_seg as mts
from fastscnn import visualize
from fastscnn.data.cityscapes import CityscapesDataset
from fastscnn.data.loader import DataLoader, Uploader
from fastscnn.data.synthetic import generate_synthcity
from fastscnn.data.transforms import TrainTransform
from fastscnn.errors import (DivergedError, InputError, InputNotFoundError, Interrupted, MissingDependencyError,
                             UserError, no_space, write_error)
from fastscnn.evaluate import evaluate
from fastscnn.losses import SegmentationLoss
from fastscnn.metrics import strict_json
from fastscnn.model import FastSCNN
from fastscnn.palette import NUM_CLASSES
from fastscnn.predict import model_weights, read_checkpoint

CHECKPOINT = "checkpoint.pkl"  # the last state of the run: what --resume continues
BEST = "best.pkl"              # the state with the best val mIoU so far
LOG = "log.jsonl"
RUN_FILES = (CHECKPOINT, BEST, LOG, "metrics.json")  # any of them: the folder holds a run

# The paper's recipe and the run's habits: what a setting left at None becomes.
DEFAULTS = dict(lr=0.045, momentum=0.9, weight_decay=4e-5, power=0.9, aux_weight=0.4, ohem=False,
                ohem_thresh=0.7, ohem_min_kept=100_000, scale_range=(0.5, 2.0), log_every=10, seed=0)
# Data loading threads: on the CPU they share the cores with the kernels; beside a GPU, which
# trains on hundreds of crops a second, up to 8 decode and augment while it works.
WORKERS = {"cpu": 2, "cuda": min(8, os.cpu_count() or 1)}
# Cityscapes: the paper's batch, crop and 1000 epochs (about 247,000 iterations, days on one
# GPU), so a checkpoint and an evaluation every 1,000 iterations.
CITYSCAPES = dict(batch_size=12, crop_size=(1024, 1024), epochs=1000, eval_every=1000, checkpoint_every=1000)
# SynthCity presets: (images train/val, image size, crop, batch, iterations, eval and checkpoint every).
SYNTH_PRESETS = {
    "cpu": dict(synth_train=240, synth_val=40, synth_size=(192, 384), crop_size=(192, 192),
                batch_size=4, iters=3200, eval_every=800, checkpoint_every=800),
    "cuda": dict(synth_train=1500, synth_val=100, synth_size=(512, 1024), crop_size=(512, 512),
                 batch_size=12, iters=4000, eval_every=500, checkpoint_every=500),
}
# What --resume lets change: where things are and how the run reports. Everything else
# decides the next iteration, so it comes from the checkpoint (a longer schedule aside).
CHANGEABLE_ON_RESUME = ("data_root", "synth_root", "device", "workers", "log_every", "eval_every",
                        "checkpoint_every")


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a run; ``None`` means "the default for this data and device" (:func:`resolve`).

    ``load_from`` starts a new run from a checkpoint's model weights (fine-tuning);
    ``resume`` continues the run in ``out`` from its checkpoint, with its configuration.
    """

    data_root: str = None
    out: str = "runs/fastscnn"
    device: str = None
    iters: int = None
    epochs: int = None
    batch_size: int = None
    crop_size: tuple = None
    lr: float = None
    momentum: float = None
    weight_decay: float = None
    power: float = None
    aux_weight: float = None
    ohem: bool = None
    ohem_thresh: float = None
    ohem_min_kept: int = None
    scale_range: tuple = None
    eval_every: int = None
    log_every: int = None
    checkpoint_every: int = None
    seed: int = None
    workers: int = None
    resume: bool = False
    load_from: str = None
    synth_root: str = None
    synth_train: int = None
    synth_val: int = None
    synth_size: tuple = None


def _flag(name):
    return "--" + name.replace("_", "-")


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _check(ok, name, expected, got):
    if not ok:
        raise InputError(f"{_flag(name)}: expected {expected}, got {got}")


def usable_device(device):
    """``device`` ("cpu" or "cuda"; None: the default one) if this machine can run it, else a
    UserError that says why not and how to get it."""
    try:
        device = device or mts.cuda.default_device()
        why = mts.cuda.unavailable_reason() if device == "cuda" else None
    except ValueError as e:  # a bad MTS_CUDA
        raise InputError(str(e)) from e
    _check(device in ("cpu", "cuda"), "device", "'cpu' or 'cuda'", repr(device))
    if why:
        raise MissingDependencyError(f"--device cuda: {why}")
    return device


def resolve(cfg):
    """Fill every ``None`` of ``cfg`` for its data and device and check every value;
    returns a new TrainConfig. Bad values raise InputError naming the flag."""
    c = dataclasses.replace(cfg)
    c.device = usable_device(c.device)
    presets = SYNTH_PRESETS[c.device] if c.data_root is None else CITYSCAPES
    schedule_given = c.iters is not None or c.epochs is not None
    for key, value in {**DEFAULTS, "workers": WORKERS[c.device], **presets}.items():
        if getattr(c, key) is None and not (key in ("iters", "epochs") and schedule_given):
            setattr(c, key, value)
    c.crop_size, c.scale_range = _pair(c.crop_size), tuple(float(s) for s in c.scale_range)
    if c.data_root is None:
        h, w = c.synth_size = tuple(c.synth_size)
        c.synth_root = c.synth_root or data_home() / f"synthcity-{c.synth_train}-{c.synth_val}-{h}x{w}-s{c.seed}"
        c.synth_root = str(Path(c.synth_root).absolute())
    else:
        c.data_root = str(Path(c.data_root).absolute())

    if cfg.iters is not None and cfg.epochs is not None:
        raise InputError(f"--iters {cfg.iters} and --epochs {cfg.epochs}: give one of them")
    if c.resume and c.load_from:
        raise InputError("--resume continues the run in --out, --load-from starts a new one: give one of them")
    for name in ("iters", "epochs", "log_every", "eval_every", "checkpoint_every", "ohem_min_kept", "synth_train",
                 "synth_val"):
        value = getattr(c, name)
        _check(value is None or (isinstance(value, int) and value >= 1), name, "a positive integer", value)
    # Batch norm in training needs two values per channel, and the pyramid pooling's 1x1 bin
    # has one per image.
    _check(isinstance(c.batch_size, int) and c.batch_size >= 2, "batch_size", "an integer >= 2", c.batch_size)
    _check(isinstance(c.workers, int) and c.workers >= 0, "workers", "an integer >= 0", c.workers)
    _check(all(isinstance(s, int) and s >= 1 for s in c.crop_size), "crop_size", "positive sizes", c.crop_size)
    _check(c.lr > 0, "lr", "a number > 0", c.lr)
    _check(0 <= c.momentum < 1, "momentum", "a number in [0, 1)", c.momentum)
    for name in ("weight_decay", "power", "aux_weight"):
        _check(getattr(c, name) >= 0, name, "a number >= 0", getattr(c, name))
    _check(0 < c.ohem_thresh <= 1, "ohem_thresh", "a probability in (0, 1]", c.ohem_thresh)
    lo, hi = c.scale_range
    _check(0 < lo <= hi, "scale_range", "two factors 0 < MIN <= MAX", f"{lo:g} {hi:g}")
    return c


def data_home():
    """Where SynthCity is generated by default: ``$MTS_DATA`` when set, else
    ``$XDG_CACHE_HOME/minitorch-seg/data`` (``~/.cache/minitorch-seg/data``)."""
    if os.environ.get("MTS_DATA"):
        return Path(os.environ["MTS_DATA"]).absolute()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minitorch-seg" / "data"


def data_root(config, say=None):
    """The data folder of a resolved config (a checkpoint's ``config``): Cityscapes as given, or
    SynthCity, generated first if it is not complete there; ``say`` (e.g. ``print``) is told
    where the data is, and generation reports its progress on stderr."""
    if config.get("data_root") is not None:
        if say:
            say(f"data: Cityscapes in {config['data_root']}")
        return Path(config["data_root"])
    root, (h, w) = Path(config["synth_root"]), config["synth_size"]
    if say:
        say(f"data: SynthCity ({config['synth_train']} train + {config['synth_val']} val images at {h}x{w}) "
            f"in {root} (set MTS_DATA to keep it elsewhere)")
    try:
        return generate_synthcity(root, config["synth_train"], config["synth_val"], (h, w), config["seed"],
                                  progress=True)
    except OSError as e:
        if no_space(e):
            raise UserError(f"no space left on the device for SynthCity in {root}: free some space, or set "
                            f"MTS_DATA to a folder with more room") from e
        raise


def datasets(cfg, say=None):
    """The (train, val) datasets of a resolved config (:func:`data_root`); SynthCity is kept
    decoded in memory (``CityscapesDataset(cache=True)``) when that takes at most a quarter of
    the machine's memory."""
    root = data_root(dataclasses.asdict(cfg), say)
    cache = False
    if cfg.data_root is None:
        h, w = cfg.synth_size
        cache = (cfg.synth_train + cfg.synth_val) * h * w * 4 <= _memory_bytes() // 4
    return CityscapesDataset(root, "train", cache), CityscapesDataset(root, "val", cache)


def _memory_bytes():
    """This machine's physical memory in bytes (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def param_groups(model, weight_decay):
    """Two SGD groups: weight decay on every parameter except depthwise conv weights.

    A choice, documented in the README: the paper (section 4.1) leaves L2 off depthwise
    convolutions, as MobileNetV2 does, and puts 4e-5 on the other layers with no exception
    for batch norm or biases, so batch-norm scales and shifts and the heads' biases are
    decayed too, as ``torch.optim.SGD(model.parameters(), weight_decay=...)`` does. (Many
    later recipes exempt them; at 4e-5 the difference is small.)
    """
    depthwise = {id(m.weight) for m in model.modules()
                 if isinstance(m, mts.nn.Conv2d) and m.groups > 1}
    decay = [p for p in model.parameters() if id(p) not in depthwise]
    no_decay = [p for p in model.parameters() if id(p) in depthwise]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_step(model, optimizer, criterion, x, y, it, first_bad):
    """One SGD step on the batch ``(x, y)``, arrays already on the model's device; iteration ``it``.

    Returns ``(loss, first_bad)``, both 0-d arrays on the device: the loss, and the first
    iteration whose loss was not finite (0 while none was). Nothing is read back to the
    host; the graph and the outputs die with this function, before the next forward.
    """
    model.train()
    outputs = model(mts.Tensor(x))
    loss = criterion(outputs, y)
    del outputs
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    xp = mts.device.xp_of(loss.data)
    first_bad = xp.where((first_bad == 0) & ~xp.isfinite(loss.data), it, first_bad)
    return loss.data, first_bad


def uploader(device):
    """``upload(x, y)``: a host batch on ``device``. On the CPU it is the batch itself (no
    copy); on cuda each array goes through a pinned host buffer of its own (:class:`Uploader`)."""
    if device == "cpu":
        return lambda x, y: (x, y)
    images, labels = Uploader(), Uploader()
    return lambda x, y: (images(x), labels(y))


def _count_nonfinite(arrays):
    """How many of ``arrays`` (on one device) hold a NaN or an infinity, in one read-back."""
    xp = mts.device.xp_of(arrays[0])
    return int((~xp.stack([xp.isfinite(a).all() for a in arrays])).sum())


def _batches(loader, start):
    """``(epoch, x, y)`` for iteration ``start`` on, epoch after epoch, forever."""
    epoch, offset = divmod(start, len(loader))
    while True:
        loader.set_epoch(epoch)
        for x, y in loader.iterate(start=offset):
            yield epoch, x, y
        epoch, offset = epoch + 1, 0


class _StopRequest:
    """The SIGINT/SIGTERM handler of a run: the first signal asks the loop to stop after the
    current iteration (``signum`` is set); a second one stops at once (KeyboardInterrupt)."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals():
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield stop
        return
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _read_log(path, until):
    """Records of a JSONL log up to iteration ``until`` (later ones were not checkpointed)."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]  # a last line without its newline was cut off mid-write
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if r["iter"] <= until]


def _write_text(path, text):
    """Write ``text`` to ``path`` atomically: a temporary file, renamed over it; none is left behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path, obj):
    _write_text(path, json.dumps(strict_json(obj), indent=1, allow_nan=False) + "\n")


def _write_json_lines(path, records):
    _write_text(path, "".join(json.dumps(strict_json(r), allow_nan=False) + "\n" for r in records))


def _append_record(path, entry):
    path.parent.mkdir(parents=True, exist_ok=True)  # the folder appears with the first thing written
    with open(path, "a") as f:
        f.write(json.dumps(strict_json(entry), allow_nan=False) + "\n")


def _resume_config(asked, saved):
    """The configuration of a resumed run: ``saved`` (the checkpoint's, resolved) with the
    settings of ``asked`` that may change (CHANGEABLE_ON_RESUME); any other setting given
    in ``asked`` must equal the saved one. The schedule length is checked later
    (:func:`_schedule_length`), as it needs the data set's size."""
    merged = dataclasses.replace(saved, out=asked.out, resume=True, load_from=None)  # weights: the checkpoint's
    for field in dataclasses.fields(TrainConfig):
        name, mine, theirs = field.name, getattr(asked, field.name), getattr(saved, field.name)
        if mine is None or name in ("out", "resume", "iters", "epochs"):
            continue
        if name in ("crop_size", "scale_range", "synth_size") and theirs is not None:
            mine = tuple(type(t)(m) for m, t in zip(_pair(mine), theirs))
        if name == "data_root" and theirs is None:
            raise InputError(f"--resume: --data-root {mine} contradicts the checkpoint, which trained on "
                             f"SynthCity; start a new run (--load-from to begin from its weights)")
        if name in CHANGEABLE_ON_RESUME:
            setattr(merged, name, mine)
        elif mine != theirs:
            raise InputError(f"--resume: {_flag(name)} {mine} contradicts the checkpoint's {theirs}; drop the "
                             f"flag, or start a new run (--load-from to begin from its weights)")
    return merged


def _schedule_length(asked, cfg, state, batches_per_epoch, say):
    """Iterations of the run. A resumed run keeps its schedule, unless ``asked`` gives an
    explicitly longer one: then the poly schedule is extended (and ``say`` tells)."""
    length = cfg.iters if cfg.iters is not None else cfg.epochs * batches_per_epoch
    if state is None:
        return length
    length = state["scheduler"]["max_iters"]
    if asked.iters is None and asked.epochs is None:
        return length
    flag, value = ("--iters", asked.iters) if asked.iters is not None else ("--epochs", asked.epochs)
    wanted = asked.iters if asked.iters is not None else asked.epochs * batches_per_epoch
    if wanted < length:
        in_iters = f" ({wanted} iterations)" if flag == "--epochs" else ""
        raise InputError(f"--resume: {flag} {value}{in_iters} is shorter than the checkpoint's schedule of "
                         f"{length} iterations; a resumed run can only be extended")
    if wanted > length:
        say(f"resume: extending the poly schedule from {length} to {wanted} iterations "
            f"({flag} {value}); the learning rate rises again from iteration {state['iter']}")
    return wanted


def _load_weights(model, weights, path):
    """Copy ``weights``, the state_dict read from ``path``, into ``model`` (--load-from); the
    auxiliary heads may be missing (they are then trained from scratch)."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights and not k.startswith("aux_")]
    if missing:
        raise InputError(f"--load-from: {path} lacks {len(missing)} of the model's tensors, e.g. {missing[0]}")
    try:
        model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    except ValueError as e:  # a shape that does not fit: another architecture
        raise InputError(f"--load-from: {path}: {e}") from e


def _save_checkpoint(state, path):
    """``mts.save(state, path)`` (atomic: on failure the file before stays and no temporary
    file is left); a full disk is a UserError naming the folder and the space needed."""
    try:
        mts.save(state, path)
    except OSError as e:
        if not no_space(e):
            raise
        arrays = [v for part in (state["model"], state["optimizer"]["momentum_buffers"]) for v in part.values()]
        mb = sum(getattr(a, "data", a).nbytes for a in arrays) / 1e6
        raise UserError(f"--out {path.parent}: no space left on the device for {path.name}, which needs about "
                        f"{mb:.0f} MB; free some space (or choose another --out), then --resume") from e


def _read_resume_checkpoint(out):
    path = out / CHECKPOINT
    if not path.is_file():
        raise InputNotFoundError(f"--resume: no checkpoint at {path}; start a new run without --resume")
    state = read_checkpoint(path, "--resume")
    if not (isinstance(state, dict) and {"config", "model", "optimizer", "scheduler", "iter"} <= set(state)):
        raise InputError(f"--resume: {path} is not a training checkpoint of fastscnn train")
    return state


def train(cfg, progress=True):
    """Run (or resume) training as configured; returns the final metrics dict.

    Writes into ``cfg.out`` (created with the first file): ``log.jsonl``, ``checkpoint.pkl``,
    ``best.pkl``, ``metrics.json``, ``curves.png`` and ``predictions.png`` (module docstring).
    Raises a :class:`~fastscnn.errors.UserError` for a bad setting or file (before anything is
    written, where it can be found then), :class:`~fastscnn.errors.DivergedError` when the
    loss or weights stop being finite, :class:`~fastscnn.errors.Interrupted` after a SIGINT
    or SIGTERM. Whatever stops a run, the last checkpoint written is a finite one. A
    full disk is a UserError naming the folder; the last checkpoint written is kept.
    """
    try:
        return _run(cfg, progress)
    except OSError as e:
        error = write_error(e, "--out", cfg.out)
        if error is None:
            raise
        saved = (Path(cfg.out) / CHECKPOINT).is_file()
        raise UserError(f"{error}; " + ("fix that, then --resume (the last checkpoint written is kept)" if saved
                                        else "fix that and start again")) from e


def _run(cfg, progress):
    """The body of :func:`train`."""
    asked = cfg
    cfg = resolve(asked)  # checks every given value, also when resuming
    out = Path(cfg.out)
    state = None
    if cfg.resume:
        state = _read_resume_checkpoint(out)
        cfg = resolve(_resume_config(asked, resolve(TrainConfig(**state["config"]))))
    elif found := [name for name in RUN_FILES if (out / name).exists()]:
        hint = ("continue it with --resume" if CHECKPOINT in found
                else "it saved no checkpoint to resume from: remove those files")
        raise InputError(f"--out {out} already holds a run ({', '.join(found)}): {hint}, or choose another --out")
    if cfg.data_root is not None and not Path(cfg.data_root).is_dir():
        raise InputNotFoundError(f"--data-root {cfg.data_root}: no such folder; expected a Cityscapes folder "
                                 f"holding leftImg8bit/ and gtFine/ (leave --data-root out to use SynthCity)")
    if cfg.load_from:  # read now: a bad file is reported before any data is drawn
        weights = model_weights(read_checkpoint(cfg.load_from, "--load-from"), cfg.load_from, "--load-from")

    mts.manual_seed(cfg.seed)
    train_set, val_set = datasets(cfg, tqdm.write)
    loader = DataLoader(train_set, cfg.batch_size, shuffle=True, transform=TrainTransform(cfg.crop_size, cfg.scale_range),
                        seed=cfg.seed, num_workers=cfg.workers, drop_last=True, skip_unreadable=True)
    if len(loader) == 0:
        raise InputError(f"--batch-size {cfg.batch_size} is larger than the {len(train_set)} training images")
    max_iters = _schedule_length(asked, cfg, state, len(loader), tqdm.write)
    if state is not None and max_iters != state["scheduler"]["max_iters"]:
        cfg = dataclasses.replace(cfg, iters=max_iters, epochs=None)  # the checkpoints record the extension

    model = FastSCNN(NUM_CLASSES, aux=True).to(cfg.device)
    optimizer = mts.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = mts.optim.PolyLR(optimizer, max_iters, cfg.power)
    criterion = SegmentationLoss(cfg.aux_weight, cfg.ohem, cfg.ohem_thresh, cfg.ohem_min_kept,
                                 align_corners=model.align_corners)
    ckpt_path, best_path, log_path = out / CHECKPOINT, out / BEST, out / LOG
    start, elapsed, skipped_before, history = 0, 0.0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(dict(state["scheduler"], max_iters=max_iters))
        mts.set_rng_state(state["rng"])
        start, elapsed, skipped_before = state["iter"], state["seconds"], state.get("skipped_images", 0)
        history = _read_log(log_path, start)  # later records belong to iterations that will be redone
        _write_json_lines(log_path, history)
    elif cfg.load_from:
        _load_weights(model, weights, cfg.load_from)

    xp = mts.device.xp_for(cfg.device)
    first_bad = xp.zeros((), dtype=np.int64)  # on the device; see train_step
    upload = uploader(cfg.device)
    loss = xp.zeros((), dtype=np.float32)
    saved_at = start if state is not None else None
    best = max((r["miou"] for r in history if r.get("miou") is not None), default=None)
    t0 = time.perf_counter()

    def skipped_images():
        return skipped_before + len(loader.skipped)

    def snapshot(it):
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": mts.get_rng_state(), "iter": it,
                "seconds": elapsed + time.perf_counter() - t0, "skipped_images": skipped_images(),
                "config": dataclasses.asdict(cfg)}

    def diverged(what):
        kept = (f"the last good checkpoint, {ckpt_path} (iteration {saved_at}), is kept" if saved_at
                else "no checkpoint was written")
        return DivergedError(f"training diverged: {what}; {kept}; try a lower --lr than {cfg.lr:g}")

    def check_loss():
        """Read the loss and the first non-finite iteration back, in one read from the device
        (made only at log time and before saving); raise if the loss went non-finite."""
        xp = mts.device.xp_of(first_bad)
        value, at = mts.device.to_host(xp.stack([loss.astype(np.float64), first_bad.astype(np.float64)]))
        if at:
            raise diverged(f"the loss was not finite at iteration {int(at)}")
        return float(value)

    def save(it):
        """Write the checkpoint of iteration ``it``, only if everything in it is finite."""
        nonlocal saved_at
        check_loss()
        arrays = [t.data for t in model.state_dict().values()] + list(optimizer.state_dict()["momentum_buffers"].values())
        bad = _count_nonfinite(arrays)
        if bad:
            raise diverged(f"{bad} of {len(arrays)} weight and momentum tensors were not finite after iteration {it}")
        ckpt = snapshot(it)
        _save_checkpoint(ckpt, ckpt_path)
        saved_at = it
        return ckpt

    def record(entry):
        history.append(entry)
        _append_record(log_path, entry)

    def resume_hint(it):
        if it == 0:
            return "nothing was trained yet"
        if saved_at != it:
            save(it)
        return f"saved iteration {it} in {ckpt_path}; continue with: fastscnn train --out {out} --resume"

    def evaluate_and_record(it, ckpt):
        nonlocal best
        try:
            scores = evaluate(model, val_set, cfg.device, progress=progress).compute()
        except UserError as e:  # e.g. an unreadable val image: the training is saved already
            raise type(e)(f"{e}; {resume_hint(it)} (after fixing or removing the file)") from e
        if best is None or scores["miou"] > best:  # before the record: a crash between redoes both
            _save_checkpoint(dict(ckpt, miou=scores["miou"]), best_path)
            best = scores["miou"]
        record({"iter": it, "miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"]})
        tqdm.write(f"iter {it}: val mIoU {scores['miou']:.3f}, pixel acc {scores['pixel_accuracy']:.3f}")
        return scores

    def eval_due(it):
        return it % cfg.eval_every == 0 or it == max_iters

    scores = None
    if state is not None and eval_due(start) and not any(r["iter"] == start and "miou" in r for r in history):
        scores = evaluate_and_record(start, snapshot(start))  # the run stopped before its evaluation
    it, seen_skips = start, 0
    window_t, window_n = time.perf_counter(), 0
    # Overflow warnings would only repeat, per op, what the finite check reports once.
    with _stop_on_signals() as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
            tqdm(total=max_iters, initial=start, disable=None if progress else True, desc="train") as bar:
        batches = _batches(loader, start)
        while it < max_iters:
            try:
                epoch, x, y = next(batches)
                if len(x) < 2:  # skipped images left too few for batch norm (see resolve)
                    raise InputError(f"a batch has a single readable image: {'; '.join(loader.skipped[seen_skips:])}")
            except UserError as e:  # a data problem between two iterations: keep what is done
                raise type(e)(f"{e}; {resume_hint(it)} (after fixing the data)") from e
            for message in loader.skipped[seen_skips:]:
                tqdm.write(f"skipped an unreadable training image: {message}")
            seen_skips = len(loader.skipped)
            lr = optimizer.param_groups[0]["lr"]
            loss, first_bad = train_step(model, optimizer, criterion, *upload(x, y), it + 1, first_bad)
            scheduler.step()
            it += 1
            window_n += len(x)
            bar.update(1)
            if it % cfg.log_every == 0 or it == max_iters:
                value = check_loss()
                speed = window_n / (time.perf_counter() - window_t)
                window_t, window_n = time.perf_counter(), 0
                record({"iter": it, "epoch": epoch, "loss": value, "lr": lr, "images_per_s": speed,
                        "skipped_images": skipped_images()})
                bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.4f}", img_s=f"{speed:.1f}")
            if eval_due(it) or it % cfg.checkpoint_every == 0:
                ckpt = save(it)  # before the evaluation, which may fail or be interrupted
                if eval_due(it):
                    scores = evaluate_and_record(it, ckpt)
                del ckpt
            if stop.signum is not None:
                raise Interrupted(f"interrupted at iteration {it} of {max_iters}; {resume_hint(it)}", stop.signum)
        batches.close()

    seconds = elapsed + time.perf_counter() - t0
    final = scores if scores is not None else evaluate(model, val_set, cfg.device, progress=progress).compute()
    metrics = {"miou": final["miou"], "pixel_accuracy": final["pixel_accuracy"],
               "category_miou": final.get("category_miou"), "iou_per_class": final["iou_per_class"],
               "iou_per_category": final.get("iou_per_category"), "iterations": it, "seconds": seconds,
               "device": cfg.device, "skipped_images": skipped_images()}
    _write_json(out / "metrics.json", metrics)
    visualize.plot_curves(history, out / "curves.png")
    visualize.prediction_grid(model, val_set, cfg.device, out / "predictions.png")
    return metrics
