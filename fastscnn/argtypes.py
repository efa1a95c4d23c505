"""The ``type=`` functions of the command-line flags, shared by ``fastscnn`` and its ``benchmark``.

Each turns the text of one flag into a value or raises ``argparse.ArgumentTypeError``, whose
message argparse prints after the flag's name. This module imports nothing of the package,
so both commands can use it without importing each other.
"""
import argparse


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


def positive_int(text):
    """``3`` -> 3: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value
