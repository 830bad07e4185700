"""The arithmetic a run trains in: fp32, or bf16 autocast with channels_last memory (the fast path).

`trainer.precision=auto` picks bf16 where the device computes it natively (a CUDA GPU with
bf16; a CPU with AVX512-BF16 or AMX) and fp32 elsewhere: emulated bf16 is slower than fp32,
not faster. What stays in fp32 under bf16 autocast: the weights, their gradients and the
optimizer's state (autocast casts copies for the convs and matmuls); BN's running statistics
(fp32 buffers); the loss (cross-entropy on logits cast to fp32, in the loop, the evaluation
and the probes); the probes' norms, cosines and quantiles (computed on `.float()` copies).
Layer outputs, the norm layers' included, are bf16 inside the autocast region. The probes'
extra forwards run under the same autocast as the training forward (ProbeContext.autocast).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .validation import ConfigError


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16
    channels_last: bool
    requested: str  # auto | fp32 | bf16, as configured
    native_bf16: bool  # whether this device computes bf16 natively

    def summary(self) -> dict:
        return {"precision": self.name, "channels_last": self.channels_last,
                "precision_requested": self.requested, "native_bf16": self.native_bf16}


def native_bf16(device: torch.device) -> bool:
    """bf16 matrix arithmetic in hardware: a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if any(getattr(torch.cpu, p, lambda: False)() for p in probes):
        return True
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve(requested: str, channels_last: Optional[bool], device: torch.device) -> Precision:
    """The precision a run with trainer.precision=`requested` and trainer.channels_last=`channels_last`
    (None: with bf16) trains in on `device`."""
    native = native_bf16(device)
    name = ("bf16" if native else "fp32") if requested == "auto" else requested
    return Precision(name, (name == "bf16") if channels_last is None else bool(channels_last), requested, native)


def require_native(requested: str, device: torch.device, study: str) -> None:
    """ConfigError when a run pinned to bf16 would train on a device that only emulates it:
    emulated bf16 runs at ~0.1x of fp32 (results/bench/avx2/), so a bf16 study would take ten
    times its stated cost. `auto` falls back to fp32 by itself. The precision study is exempt:
    it measures bf16's numbers, not its speed (bnstudy/conf/exp/precision.yaml)."""
    if requested != "bf16" or study == "precision" or native_bf16(device):
        return
    where = ("this CPU does not compute bf16 natively (no AVX512-BF16 or AMX; emulated bf16 is ~10x slower than fp32)"
             if device.type == "cpu"
             else f"device {device} does not compute bf16 natively (emulated bf16 is slower than fp32)")
    raise ConfigError("trainer.precision", requested, f"{where}; use trainer.precision=fp32 or auto on this machine")
