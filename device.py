"""Device and precision choice, and autocast."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vcap.errors import VcapError

if TYPE_CHECKING:  # torch is imported lazily: `vcap --help` should not wait for it
    import torch


def resolve_device(name: str = "auto") -> "torch.device":
    """auto: the GPU when there is one, else the CPU. auto and cuda name this process's GPU: under torchrun
    the one of its LOCAL_RANK, so that ranks on one machine never share a GPU."""
    import torch

    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    if name == "auto":
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VcapError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VcapError(f"--device {name}: no CUDA GPU is visible to PyTorch")
        if device.index >= torch.cuda.device_count():
            raise VcapError(f"--device {name}: PyTorch sees {torch.cuda.device_count()} GPU(s), cuda:0 to "
                            f"cuda:{torch.cuda.device_count() - 1}")
    return device


def resolve_precision(precision: str, device: "torch.device") -> str:
    """auto: bf16 where the hardware runs it fast (CUDA with bf16, CPUs with AVX512-BF16/AMX: about 3x
    fp32 on VGG16 here), fp16 on older GPUs, fp32 elsewhere."""
    import torch

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise VcapError(f"--precision {precision}: choose auto, fp32, bf16 or fp16")
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise VcapError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16"
    return "fp32"


def dtype_of(precision: str) -> "torch.dtype":
    """The torch type of a resolved precision: fp32, bf16 or fp16."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: "torch.device", precision: str):
    """The autocast context for a resolved precision (a no-op context for fp32)."""
    import torch

    enabled = precision != "fp32"
    return torch.autocast(device.type, dtype=dtype_of(precision) if enabled else None, enabled=enabled)


def compile_quietly(fn, **options):
    """torch.compile, without the line the C++ toolchain logs on every compile where a CUDA build of torch
    runs without a GPU ("No CUDA runtime is found, using CUDA_HOME=..."): noise in vcap's one-line output."""
    import logging

    import torch

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return torch.compile(fn, **options)
