"""Which number format a training step computes in: fp32, or bf16/fp16 autocast.

``--precision auto`` picks bf16 autocast on CUDA GPUs that support it (fp16 with a gradient
scaler on older ones), and on CPUs with native bf16 instructions (AVX512-BF16 or AMX-BF16).
Elsewhere bf16 is emulated and slower than fp32 (PyTorch PR #86550), so auto stays fp32. On
the CPU auto then measures: a few training steps in each format on one real batch; bf16 is kept
only when it is faster and its loss agrees with fp32 (a torch nightly once computed grouped
convolutions wrongly in bf16, issue #183815). The losses always run in fp32.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

CHOICES = ("auto", "bf16", "fp16", "fp32")
PROBE_STEPS = 3
LOSS_TOLERANCE = 0.05  # relative: bf16 keeps 8 mantissa bits, a loss of a fresh network agrees to ~1%


@dataclass(frozen=True)
class Precision:
    """The chosen format and why: ``dtype`` None means plain fp32."""

    name: str
    dtype: torch.dtype | None
    reason: str

    def autocast(self, device: torch.device) -> torch.autocast:
        """The autocast context of this format on ``device`` (a no-op for fp32)."""
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None)


FP32 = Precision("fp32", None, "")


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (empty where /proc/cpuinfo is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_cpu_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def hardware() -> str:
    """A one-line description of the device training runs on, for logs and model cards."""
    if torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(0)}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    native = "native bf16" if native_cpu_bf16() else "no native bf16"
    return f"CPU {name}, {torch.get_num_threads()} threads, {native}"


def choose(requested: str, device: torch.device, probe=None) -> Precision:
    """The format for ``requested`` (one of CHOICES) on ``device``.

    ``probe(dtype) -> (seconds, loss)`` times a few training steps in a format (None: fp32);
    auto on a CPU with native bf16 uses it to measure before committing to bf16.
    """
    if requested not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, not {requested!r}")
    if requested == "fp32":
        return Precision("fp32", None, "asked for (--precision fp32)")
    if device.type == "cuda":
        return _choose_cuda(requested)
    if requested == "fp16":
        raise ValueError("--precision fp16 needs a CUDA GPU; on the CPU use bf16 or fp32.")
    if requested == "bf16":
        return Precision("bf16", torch.bfloat16, "asked for (--precision bf16)")
    if not native_cpu_bf16():
        return Precision("fp32", None, "auto: this CPU has no native bf16, where bf16 would be slower")
    if probe is None:
        return Precision("bf16", torch.bfloat16, "auto: native bf16 CPU")
    return _measured(probe)


def _choose_cuda(requested: str) -> Precision:
    if requested == "fp16":
        return Precision("fp16", torch.float16, "asked for (--precision fp16)")
    if requested == "bf16":
        return Precision("bf16", torch.bfloat16, "asked for (--precision bf16)")
    if not torch.cuda.is_bf16_supported():
        return Precision("fp16", torch.float16, "auto: this GPU has no bf16")
    return Precision("bf16", torch.bfloat16, "auto: CUDA bf16")


def _measured(probe) -> Precision:
    fp32_seconds, fp32_loss = probe(None)
    bf16_seconds, bf16_loss = probe(torch.bfloat16)
    measured = f"{PROBE_STEPS} steps: fp32 {fp32_seconds:.2f} s, bf16 {bf16_seconds:.2f} s"
    if not abs(bf16_loss - fp32_loss) <= LOSS_TOLERANCE * max(abs(fp32_loss), 1e-6):
        return Precision("fp32", None, f"auto: bf16 loss {bf16_loss:.4f} disagrees with fp32 {fp32_loss:.4f}")
    if bf16_seconds >= fp32_seconds:
        return Precision("fp32", None, f"auto: bf16 not faster ({measured})")
    return Precision("bf16", torch.bfloat16, f"auto: native bf16 CPU, {fp32_seconds / bf16_seconds:.2f}x ({measured})")


def time_steps(step, steps: int = PROBE_STEPS) -> tuple[float, float]:
    """Seconds for ``steps`` calls of ``step() -> loss`` after one warm-up call, and the first loss.

    The first call runs with a fixed seed, so dropout draws the same masks in every format.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        loss = float(step())
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - started, loss
