"""TEST-ONLY shim: run Lightning's stock DeepSpeedStrategy (ZeRO-3) on CPU processes with gloo.

Production code never imports this module; `lightning_modules/trainer.py` builds the stock strategy and on
GPUs nothing here is needed. On a CPU-only machine three things stand in the way, and `install()` changes
exactly those, in the current process only:

1. `DeepSpeedStrategy.setup_environment` refuses any accelerator that is not a `CUDAAccelerator`
   (`isinstance` check on the module-level name): we rebind that name in
   `lightning.pytorch.strategies.deepspeed` to `(CUDAAccelerator, CPUAccelerator)`.
2. The strategy checks that device indices equal the local ranks, and DeepSpeed passes
   `root_device.index` on: CPU devices get an index (`torch.device("cpu", i)`; tensors moved there still
   live on the one CPU device).
3. DeepSpeed picks its accelerator from `DS_ACCELERATOR` (set to `cpu` before it is imported), and its
   first distributed init JIT-builds the `deepspeed_shm_comm` op (~144 s on 2 cores): marking it
   incompatible skips the build with identical results (gloo does the communication).

With several processes Lightning's subprocess launcher starts this same script again per rank, so the
shim must be installed at import time of the launched script (tests/support/fit_with_cpu_deepspeed.py
does), not inside the test process. Precision: `32-true`, `bf16-mixed`, `bf16-true` work; `16-mixed`
does not (DeepSpeed's CPU accelerator has no fp16).
"""
from __future__ import annotations

import os

_installed = False


def install() -> None:
    """Idempotent; call before the Trainer is built (importing lightning/deepspeed first is fine)."""
    global _installed
    if _installed:
        return
    os.environ["DS_ACCELERATOR"] = "cpu"
    os.environ.setdefault("ACTSYNC_DIST_BACKEND", "gloo")  # read by lightning_modules/trainer.py

    import deepspeed.ops
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # skip the ~144 s JIT build

    import lightning.pytorch.strategies.deepspeed as lightning_deepspeed
    import torch
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.accelerators.cuda import CUDAAccelerator

    lightning_deepspeed.CUDAAccelerator = (CUDAAccelerator, CPUAccelerator)  # isinstance accepts a tuple

    original = CPUAccelerator.get_parallel_devices

    def indexed_cpu_devices(devices):
        return [torch.device("cpu", i) for i in range(len(original(devices)))]

    CPUAccelerator.get_parallel_devices = staticmethod(indexed_cpu_devices)
    _installed = True


def install_load_probe(out: str) -> None:
    """TEST-ONLY: at on_train_start (after a resumed checkpoint is loaded, before the first step) gather the
    DiT's full parameters on every rank and let rank 0 save them to `out` (safetensors, DiT key names)."""
    import deepspeed
    from safetensors.torch import save_file

    from lightning_modules.flow_module import AvatarFlowModule

    original = AvatarFlowModule.on_train_start

    def on_train_start(self):
        original(self)
        with deepspeed.zero.GatheredParameters(list(self.model.parameters())):  # collective under ZeRO-3
            state = {k: v.detach().cpu().clone().contiguous() for k, v in self.model.state_dict().items()}
        if self.global_rank == 0:
            save_file(state, out)

    AvatarFlowModule.on_train_start = on_train_start
