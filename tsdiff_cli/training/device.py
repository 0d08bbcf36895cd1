"""Where training and sampling run: the device a setting names, and whether bf16 autocast pays."""

from __future__ import annotations

import torch

from tsdiff_cli.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (a CUDA GPU when there is one), ``"cpu"`` or ``"cuda"`` (an error without one)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device", "is \"cuda\" but no CUDA GPU is visible", 'use device = "auto" or "cpu"')
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_bf16(precision: str, device: torch.device) -> bool:
    """``[train] precision`` / ``[sample] precision`` → whether to run forward passes under
    bfloat16 autocast. "auto" takes bf16 where the hardware has it natively: any CUDA GPU, a CPU
    with AVX512-BF16 or AMX (measured on such a 2-core CPU: sampling about 1.45×, a paper-preset
    training step 1.4–1.9× faster); elsewhere bf16 is emulated and slower."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    native = (getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
              or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return device.type == "cpu" and bool(native)
