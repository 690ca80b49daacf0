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


# Longest file first, on a worker of its own: `make test` runs `-n 2 --dist loadfile --no-loadscope-reorder`,
# whose scheduler hands files out in collection order, two per worker at the start, then one at a time as a
# worker frees up. The metric sanity module (~500 s, its probe fixture ~400 s) is the critical path, so it goes
# first, the next longest second (the other worker), and two tiny files third and fourth, so the first worker
# starts on sanity + a tiny file and the other worker takes everything else until sanity ends.
LONG_FIRST = ("test_metric_sanity.py", "test_gpu_suite.py", "test_audio.py", "test_dataset.py", "test_training.py",
              "test_realvideo_prep.py", "test_deepspeed.py", "test_bad_input.py", "test_curve.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable: file order kept otherwise
