"""Published PyTorch Fast-SCNN checkpoints into our model: ``fastscnn import-weights``.

Two formats, each read into the :class:`~fastscnn.model.FastSCNN` variant of the same name:

- ``mmseg``: mmsegmentation's Cityscapes checkpoint (``fast_scnn_lr0.12_8x4_160k_cityscapes``,
  70.96 mIoU): ``{"meta": ..., "state_dict": {...}}`` with keys ``backbone.*``,
  ``decode_head.*`` and ``auxiliary_head.{0,1}.*``.
- ``tramac``: Tramac/Fast-SCNN-pytorch's ``fast_scnn_citys.pth``: a bare state_dict, keys
  prefixed with ``module.`` when it was saved from ``nn.DataParallel``; ``auxlayer.*``
  only when trained with ``--aux``.

The mapping pairs each of our conv and batch-norm layers with one of theirs (the ``*_layers``
functions below, which read as the correspondence between the two module trees); a layer's
parameters and buffers keep their names (``weight``, ``bias``, ``running_mean``,
``running_var``). PyTorch's ``num_batches_tracked`` counter has no counterpart here: only the
running statistics matter in eval mode, so it is read and dropped. Auxiliary heads are
imported where the checkpoint has them and the variant has a place for them.

The import is strict: every tensor of the checkpoint must find its place and every tensor
of ours must be filled, at the same shape, or nothing is written and the error names the
missing, unexpected and mis-shaped keys.

PyTorch is needed only to read the file (``torch.load(..., weights_only=True)``, which
unpickles tensors and plain containers, never code); it is imported when a file is read.
"""
from pathlib import Path

import numpy as np

import minitorch_seg as mts
from fastscnn.errors import InputError, InputNotFoundError, MissingDependencyError
from fastscnn.model import FastSCNN

FORMATS = ("mmseg", "tramac")


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError("import-weights needs PyTorch to read .pth files, and it is not installed: "
                           "pip install 'minitorch-seg[torch]' (or pip install torch)") from e
    return torch


def read_checkpoint(path):
    """The object stored in a PyTorch file, read with ``weights_only=True``, tensors kept as torch tensors."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"checkpoint: no file at {path}")
    torch = _import_torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a file it cannot read safely
        raise InputError(f"checkpoint: {path} is not a PyTorch file that torch.load(weights_only=True) "
                         f"reads ({type(e).__name__}: {e})") from e


def state_dict_of(checkpoint):
    """The ``{name: numpy array}`` state_dict in a checkpoint: the checkpoint itself, or its
    ``"state_dict"`` entry (mmseg saves ``{"meta": ..., "state_dict": ...}``), with any
    ``module.`` prefix removed."""
    state = checkpoint
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise InputError(f"checkpoint: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    if all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    arrays = {}
    for name, value in state.items():
        if not hasattr(value, "numpy"):
            raise InputError(f"checkpoint: {name} is a {type(value).__name__}, expected a tensor")
        arrays[name] = value.detach().cpu().float().numpy()  # also half/bfloat16 files: NumPy has no bfloat16
    return arrays


def _unit(layers, ours, conv, bn):
    """One ``conv_bn_relu`` of ours (its conv is ``ours.0``, its BN ``ours.1``) <- their conv and BN."""
    layers[f"{ours}.0"] = conv
    layers[f"{ours}.1"] = bn


def mmseg_layers(aux):
    """{our layer: their layer} for mmseg's EncoderDecoder (mmcv ConvModules: ``.conv`` + ``.bn``)."""
    layers = {}

    def unit(ours, theirs):
        _unit(layers, ours, f"{theirs}.conv", f"{theirs}.bn")

    ltd, gfe, ffm = "learning_to_downsample", "global_feature_extractor", "feature_fusion"
    unit(f"{ltd}.0", f"backbone.{ltd}.conv")
    for i in (1, 2):
        unit(f"{ltd}.{i}.0", f"backbone.{ltd}.dsconv{i}.depthwise_conv")
        unit(f"{ltd}.{i}.1", f"backbone.{ltd}.dsconv{i}.pointwise_conv")
    for i in range(9):  # our 9 bottlenecks in a row <- their three groups of three
        for j in range(3):
            unit(f"{gfe}.{i}.block.{j}", f"backbone.{gfe}.bottleneck{i // 3 + 1}.{i % 3}.conv.{j}")
    for k in range(4):  # their pooling stage k is Sequential(AdaptiveAvgPool2d, ConvModule)
        unit(f"{gfe}.9.stages.{k}", f"backbone.{gfe}.ppm.{k}.1")
    unit(f"{gfe}.9.project", f"backbone.{gfe}.out")
    unit(f"{ffm}.low_dw", f"backbone.{ffm}.dwconv")
    unit(f"{ffm}.low_project", f"backbone.{ffm}.conv_lower_res")
    unit(f"{ffm}.high_project", f"backbone.{ffm}.conv_higher_res")
    for i in (0, 1):
        unit(f"classifier.body.{i}.0", f"decode_head.convs.{i}.depthwise_conv")
        unit(f"classifier.body.{i}.1", f"decode_head.convs.{i}.pointwise_conv")
    layers["classifier.logits"] = "decode_head.conv_seg"
    if aux:  # auxiliary_head.0 reads the context branch (in_index -2), .1 the 1/8 features (-3)
        for ours, k in (("aux_gfe", 0), ("aux_ltd", 1)):
            unit(f"{ours}.body.0", f"auxiliary_head.{k}.convs.0")
            layers[f"{ours}.logits"] = f"auxiliary_head.{k}.conv_seg"
    return layers


def tramac_layers(aux):
    """{our layer: their layer} for Tramac's FastSCNN (blocks are Sequentials kept in ``.conv``)."""
    layers = {}

    def unit(ours, theirs, conv=0):  # conv and BN at indices conv, conv + 1 of their Sequential
        _unit(layers, ours, f"{theirs}.{conv}", f"{theirs}.{conv + 1}")

    def dsconv(ours, theirs):  # _DSConv: dw conv, BN, ReLU, pw conv, BN, ReLU
        unit(f"{ours}.0", f"{theirs}.conv")
        unit(f"{ours}.1", f"{theirs}.conv", conv=3)

    ltd, gfe, ffm = "learning_to_downsample", "global_feature_extractor", "feature_fusion"
    unit(f"{ltd}.0", f"{ltd}.conv.conv")
    dsconv(f"{ltd}.1", f"{ltd}.dsconv1")
    dsconv(f"{ltd}.2", f"{ltd}.dsconv2")
    for i in range(9):
        theirs = f"{gfe}.bottleneck{i // 3 + 1}.{i % 3}.block"
        unit(f"{gfe}.{i}.block.0", f"{theirs}.0.conv")
        unit(f"{gfe}.{i}.block.1", f"{theirs}.1.conv")
        unit(f"{gfe}.{i}.block.2", theirs, conv=2)  # the linear projection: a bare conv and BN
    for k in range(4):
        unit(f"{gfe}.9.stages.{k}", f"{gfe}.ppm.conv{k + 1}.conv")
    unit(f"{gfe}.9.project", f"{gfe}.ppm.out.conv")
    unit(f"{ffm}.low_dw", f"{ffm}.dwconv.conv")
    unit(f"{ffm}.low_project", f"{ffm}.conv_lower_res")
    unit(f"{ffm}.high_project", f"{ffm}.conv_higher_res")
    dsconv("classifier.body.0", "classifier.dsconv1")
    dsconv("classifier.body.1", "classifier.dsconv2")
    layers["classifier.logits"] = "classifier.conv.1"  # classifier.conv.0 is the dropout
    if aux:  # auxlayer: conv, BN, ReLU, dropout, conv
        unit("aux_ltd.body.0", "auxlayer")
        layers["aux_ltd.logits"] = "auxlayer.4"
    return layers


_LAYERS = {"mmseg": mmseg_layers, "tramac": tramac_layers}
_LOGITS = {"mmseg": "decode_head.conv_seg.weight", "tramac": "classifier.conv.1.weight"}
_AUX_PREFIX = {"mmseg": "auxiliary_head.", "tramac": "auxlayer."}


def _listing(what, names, limit=20):
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{len(names)} {what}: {shown}{more}"


def convert(state, fmt):
    """Our FastSCNN (variant ``fmt``, eval mode) holding the weights of the state_dict ``state``.

    ``state`` maps their names to arrays (:func:`state_dict_of`). Raises InputError (a ValueError)
    naming every missing, unexpected and mis-shaped key when the two do not match one to one.
    """
    if fmt not in FORMATS:
        raise InputError(f"format: expected one of {list(FORMATS)}, got {fmt!r}")
    aux = any(k.startswith(_AUX_PREFIX[fmt]) for k in state)
    num_classes = state[_LOGITS[fmt]].shape[0] if _LOGITS[fmt] in state else 19
    model = FastSCNN(num_classes, aux=aux, variant=fmt)
    layers = _LAYERS[fmt](aux)
    ours = model.state_dict()
    theirs_to_ours = {}
    for key in ours:
        layer, param = key.rsplit(".", 1)
        theirs_to_ours[f"{layers[layer]}.{param}"] = key
    counters = {f"{layers[k.rsplit('.', 1)[0]]}.num_batches_tracked" for k in ours if k.endswith("running_mean")}

    missing = [k for k in theirs_to_ours if k not in state]
    unexpected = [k for k in state if k not in theirs_to_ours and k not in counters]
    misshaped = [f"{k} {tuple(state[k].shape)} (ours {ours[o].shape})" for k, o in theirs_to_ours.items()
                 if k in state and tuple(state[k].shape) != ours[o].shape]
    if missing or unexpected or misshaped:
        problems = [_listing(what, names) for what, names in
                    (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", misshaped))
                    if names]
        nothing_matched = len(missing) == len(theirs_to_ours)
        hint = f" (none of its keys is a {fmt} key: is it the other format?)" if nothing_matched else ""
        raise InputError(f"checkpoint: not a {fmt} Fast-SCNN state_dict{hint}: " + "; ".join(problems))
    model.load_state_dict({o: np.asarray(state[k], dtype=np.float32) for k, o in theirs_to_ours.items()})
    return model.eval()


def import_weights(checkpoint, out, fmt):
    """Read the PyTorch file ``checkpoint`` of format ``fmt`` and write ``out`` for
    ``evaluate``/``predict --checkpoint``: ``{"variant": fmt, "model": state_dict}`` saved
    with :func:`minitorch_seg.save`. Returns the imported model."""
    if fmt not in FORMATS:
        raise InputError(f"format: expected one of {list(FORMATS)}, got {fmt!r}")
    model = convert(state_dict_of(read_checkpoint(checkpoint)), fmt)
    mts.save({"variant": fmt, "model": model.state_dict()}, out)
    return model
