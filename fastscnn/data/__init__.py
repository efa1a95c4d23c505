"""Data for Fast-SCNN, with numpy and PIL only (no engine import).

- ``cityscapes.CityscapesDataset``: the official Cityscapes folder layout, labelIds -> trainIds;
- ``synthetic.generate_synthcity``: draws SynthCity, a synthetic stand-in, in that same layout
  (also ``python -m fastscnn.data.synthetic --out DIR``);
- ``transforms.TrainTransform`` / ``transforms.EvalTransform``: the paper's augmentation;
- ``loader.DataLoader``: threaded, deterministic batches of numpy arrays.

Import from the modules (``from fastscnn.data.loader import DataLoader``): this file imports
nothing, so ``python -m fastscnn.data.synthetic`` runs without loading itself twice.
"""
