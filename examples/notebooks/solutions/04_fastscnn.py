"""Solutions to the exercises of lecture 4 (examples/notebooks/04_fastscnn.ipynb).

Each section replaces the notebook cell that starts with the same ``# EXERCISE`` line; the
names it uses (``np``, ``mts``, ``F``) come from the notebook's first cell.
"""
# EXERCISE 4.1: a bottleneck's parameters by hand
def bottleneck_params(cin, cout, t):
    """The number of trainable parameters of Bottleneck(cin, cout, t, stride), as a formula."""
    hidden = t * cin
    expand = cin * hidden + 2 * hidden          # 1x1 weights, then batch norm's gamma and beta
    depthwise = 9 * hidden + 2 * hidden         # one 3x3 filter per channel
    project = hidden * cout + 2 * cout
    return expand + depthwise + project


# EXERCISE 4.2: overfit one batch
def overfit_one_batch(model, images, labels, steps, lr=0.05):
    """Train ``model`` for ``steps`` SGD steps on one batch; return the loss (float) of every step."""
    model.train()
    optimizer = mts.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# EXERCISE 4.3: IoU from the confusion matrix
def iou_from_confusion(cm):
    """(iou per class as an array with NaN for absent classes, miou) from a confusion matrix (rows: truth)."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp        # TP + FP + FN
    with np.errstate(invalid="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return iou, float(np.nanmean(iou))
