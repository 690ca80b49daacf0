"""Fixtures shared by several test modules."""
import os

import pytest
import torch

# Triton kernels run on CPU only through the interpreter, and it must be switched on before any module
# defining @triton.jit kernels is imported (kernels/time_attention_triton.py reads it at import).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist (`make test`: one worker per core) each worker gets one torch thread: two workers with
# torch's default of one thread per core oversubscribe the machine, which slows small ops several times.
if os.environ.get("PYTEST_XDIST_WORKER") and os.cpu_count() and os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, os.cpu_count() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's in-process runs: on a shared 2-core machine oversubscribed threads
    are several times (up to ~20x for small forward passes) slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Longest files first: `make test` runs `-n 2 --dist loadfile`, whose scheduler hands files to the workers in
# collection order, so a long file collected late becomes the tail that decides the wall time (the metric
# sanity module's probe fixture alone is ~400 s). Longest-first keeps the two workers evenly loaded.
LONG_FIRST = ("test_metric_sanity.py", "test_gpu_suite.py", "test_training.py", "test_realvideo_prep.py",
              "test_deepspeed.py", "test_curve.py", "test_bad_input.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable: file order kept otherwise
