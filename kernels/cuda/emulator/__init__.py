"""The emulated GPU: CUDA C kernels run on the CPU, one fiber per waiting thread.

``MTS_CUDA=emulate`` (or ``minitorch_seg.cuda.emulate()`` before the first CUDA array) makes
device ``"cuda"`` this emulator instead of a real GPU; ``kernels.device`` is the one place
that decides. Nothing else changes: the same ``.cu`` files, launchers and training code run.

- ``device.h``: what a kernel sees (threadIdx, __syncthreads, atomics, math), in C++.
- ``scheduler.h``: how a grid of blocks of threads runs on one core, and what a barrier is.
- ``compiler.py``: ``RawModule``: compile a ``.cu`` with g++/clang++, check and run launches.
- ``xp.py``: the array module (CuPy's names) whose arrays live in host memory but report
  device ``cuda``, with poisoned fresh memory and counters of launches, reads and bytes.
- ``trace.h``, ``trace.cpp``, ``trace.py``: memory traces (``MTS_CUDA_TRACE=1``): every load
  and store of a kernel, grouped into warp requests, sectors, unique bytes, bank conflicts.
- ``roofline.py``: GPU time estimated (uncalibrated) from traces, for a named GPU (H100).
"""
