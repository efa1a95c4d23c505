"""The main job: train Fast-SCNN.

    python examples/train_cityscapes.py                        # SynthCity, CPU or GPU
    python examples/train_cityscapes.py --data-root CITYSCAPES # the real data set

Every flag of ``fastscnn train`` works here (``--help`` lists them). Without ``--data-root``
it generates SynthCity (a city-like data set in the Cityscapes layout) under ``data/`` and
picks a size and schedule that suit the device; results go to ``runs/fastscnn``.
"""
import sys

from fastscnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
