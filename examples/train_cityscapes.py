"""The main job: train Fast-SCNN.

    python examples/train_cityscapes.py                        # SynthCity, CPU or GPU
    python examples/train_cityscapes.py --data-root CITYSCAPES # the real data set
    python examples/train_cityscapes.py --resume               # continue after Ctrl-C

Every flag of ``fastscnn train`` works here (``--help`` lists them). Without ``--data-root``
it generates SynthCity (a city-like data set in the Cityscapes layout) in
``~/.cache/minitorch-seg/data`` (or ``$MTS_DATA``), says where, and picks a size and schedule that suit the device; results go to ``runs/fastscnn``
(``checkpoint.pkl`` the last state, ``best.pkl`` the best validation mIoU). Ctrl-C saves
the run after the current iteration; ``--resume`` continues it exactly.
"""
import sys

from fastscnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
