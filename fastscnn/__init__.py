"""Fast-SCNN (Poudel, Liwicki, Cipolla 2019) on minitorch-seg: model, data, training, evaluation."""
import kernels  # noqa: F401  (first of all: it sets up OpenBLAS before NumPy loads it)
