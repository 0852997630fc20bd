"""``batch_size: auto``: the images per model pass, measured on CUDA, a fixed default on the CPU.

On CUDA the largest batch that fits is found by trial: one salience pass (the run's own
extractor: method, salience path, AMP, channels-last as configured) on random images of the
input size at 8, 16, 32, ... images, doubling while the pass succeeds and its peak allocated
memory (``torch.cuda.max_memory_allocated``) stays within :data:`CUDA_MEMORY_FRACTION` of the
device's memory, then bisecting between the last batch that fit and the first that did not.
The margin leaves room for what the measures hold beside a pass (upscaled maps, the blurred
and moved images of one batch). The search stops at :data:`AUTO_MAX_BATCH`.

On the CPU there is no memory to probe safely (an allocation failure there can end the
process), so ``auto`` means :data:`CPU_AUTO_BATCH`: measured in ``docs/benchmarks.md``, an
audit of 10 DenseNet-121 runs (entropy + stability) at 224 px peaks below 2 GB with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from salience_audit.audit.config import AuditConfig
from salience_audit.models.audit_model import AuditModel

__all__ = ["AUTO_MAX_BATCH", "CPU_AUTO_BATCH", "CUDA_MEMORY_FRACTION", "auto_batch_size", "largest_fitting_batch"]

logger = logging.getLogger(__name__)

CPU_AUTO_BATCH = 16
AUTO_MAX_BATCH = 1024
CUDA_MEMORY_FRACTION = 0.8


class DoesNotFit(Exception):
    """A trial pass ran out of memory or went over the memory budget."""


def largest_fitting_batch(trial: Callable[[int], None], start: int = 8, cap: int = AUTO_MAX_BATCH) -> int:
    """The largest ``b <= cap`` for which ``trial(b)`` does not raise :class:`DoesNotFit`.

    Doubles from ``start`` while trials pass, then bisects between the last batch that passed
    and the first that failed (below ``start`` when ``start`` itself fails); about
    ``2 log2(b)`` trials. Raises :class:`DoesNotFit` when not even one image fits. Assumes that
    a batch fits whenever a larger one does.
    """

    def fits(b: int) -> bool:
        try:
            trial(b)
        except DoesNotFit:
            return False
        return True

    b = max(1, min(start, cap))
    if fits(b):
        good, bad = b, 0
        while good < cap:
            nxt = min(2 * good, cap)
            if not fits(nxt):
                bad = nxt
                break
            good = nxt
        if bad == 0:
            return good
    else:
        good, bad = 0, b
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    if good == 0:
        raise DoesNotFit("not even one image per pass fits the device memory")
    return good


def _cuda_trial(extractor: Callable[..., object], input_size: int, device: torch.device) -> Callable[[int], None]:
    total = torch.cuda.get_device_properties(device).total_memory
    budget = CUDA_MEMORY_FRACTION * total

    def trial(b: int) -> None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            x = torch.rand(b, 3, input_size, input_size, device=device)
            extractor(x)
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError as err:
            raise DoesNotFit(str(err)) from None
        finally:
            torch.cuda.empty_cache()
        peak = torch.cuda.max_memory_allocated(device)
        if peak > budget:
            raise DoesNotFit(f"peak {peak / 2**30:.2f} GiB > {budget / 2**30:.2f} GiB")

    return trial


def auto_batch_size(model: AuditModel, config: AuditConfig, device: torch.device) -> int:
    """Images per pass for ``config`` with ``model`` on ``device`` (see the module docstring)."""
    if device.type != "cuda":
        return CPU_AUTO_BATCH
    from salience_audit.audit.worker import build_extractor
    from salience_audit.salience.extract import forget_verdicts

    extractor = build_extractor(model, config, device)
    try:
        found = largest_fitting_batch(_cuda_trial(extractor, model.input_size, device))
    finally:
        forget_verdicts(model)  # random trial images must not stand in for the run's first batch
    logger.info("batch size auto: %d images per pass on %s (%s, %s)", found, device, model.arch, config.method)
    return found
