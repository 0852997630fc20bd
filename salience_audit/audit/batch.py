"""The batch loop: every selected measure for one batch of images and one group of runs, sharing every map.

The measures are the registered ones (:mod:`salience_audit.measures.registry`) that the
audit names, plus detection. For a batch x and runs r = 1..N of a group, each (run, image
variant) gets one salience pass (forward + backward for gradient methods), done on the
whole batch of that variant at once, and every measure that needs that map reads it:

- clean maps S_r(x), one pass per run: detection, entropy, human agreement, noise a = 0,
  transform identity, degradation reference, stability (all runs of the batch together);
- shared variants, made once per batch and explained once per run whichever measures
  ask for them: noisy images (noise curves), the 12 geometric variants (equivariance);
- per-run variants, made by a measure from the run's own map: guided-blur images
  (degradation); deletion / insertion uses plain forward passes.

Non-finite logits (NaN or infinity, from a broken checkpoint or an fp16 overflow) never
become rows: every pass is checked, and an image for which any pass of any run is not
finite either stops the audit with a :class:`NonFiniteLogitsError` naming the run and the
image (``on_bad_image="stop"``) or is left out of the batch's rows and reported in
:attr:`BatchAuditor.rejected` (``"skip"``). A run that is non-finite on every image of a
batch is broken and always stops the audit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.conventions import Conventions
from salience_audit.audit.host_memory import return_freed_memory
from salience_audit.errors import ModelError
from salience_audit.measures.base import BatchContext, Emit, RunView, to_numpy
from salience_audit.measures.registry import selected
from salience_audit.results.schema import RowBuffer
from salience_audit.salience.extract import SalienceExtractor, SalienceOutput


class NonFiniteLogitsError(ModelError):
    """A run gives NaN or infinite logits; ``run`` names it, ``indices`` are the images concerned."""

    def __init__(self, message: str, run: str, indices: Sequence[int]) -> None:
        super().__init__(message)
        self.run = run
        self.indices = list(indices)


@dataclass
class RunExtractor:
    """One run of a group, ready to explain batches."""

    name: str
    extractor: SalienceExtractor


@dataclass
class BatchInput:
    """A batch of images with their identity and (optional) human maps."""

    images: Tensor  # [B, 3, H, W] in [0, 1], on the model device
    labels: Tensor  # [B] int64, -1 unknown
    indices: np.ndarray
    paths: list[str]
    human_maps: Tensor | None = None  # [B, H, W] in [0, 1]
    has_human_map: Tensor | None = None  # [B] bool
    where: list[str] | None = None  # where each image is listed ("manifest.csv:12"), for messages

    def subset(self, keep: np.ndarray) -> BatchInput:
        """The images at positions ``keep`` (a sorted integer array)."""
        sel = torch.as_tensor(keep, dtype=torch.long, device=self.images.device)

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, sel.to(t.device))

        return BatchInput(
            images=self.images.index_select(0, sel),
            labels=self.labels.index_select(0, sel.to(self.labels.device)),
            indices=np.asarray(self.indices)[keep],
            paths=[self.paths[int(i)] for i in keep],
            human_maps=pick(self.human_maps),
            has_human_map=pick(self.has_human_map),
            where=None if self.where is None else [self.where[int(i)] for i in keep],
        )


@dataclass
class BatchAggregates:
    """Sums kept beside the rows (mean maps per run)."""

    map_sums: dict[str, np.ndarray] = field(default_factory=dict)
    map_counts: dict[str, int] = field(default_factory=dict)

    def add_maps(self, run: str, maps: Tensor) -> None:
        s = to_numpy(maps.sum(dim=0))
        if run in self.map_sums:
            self.map_sums[run] += s
        else:
            self.map_sums[run] = s
        self.map_counts[run] = self.map_counts.get(run, 0) + int(maps.shape[0])


class BatchAuditor:
    """Computes the configured measures for batches of one dataset and one group."""

    def __init__(
        self,
        runs: Sequence[RunExtractor],
        config: AuditConfig,
        dataset: str,
        group: str,
        input_size: int,
    ) -> None:
        self.runs = list(runs)
        self.config = config
        self.dataset = dataset
        self.group = group
        self.input_size = input_size
        self.measures = [m for m in selected(config.measures) if len(self.runs) >= m.needs.runs]
        self.conventions = Conventions(config.profile)
        """Profile-dependent operations (upscaling, guided blur, noisy images), handed to the measures."""
        self.aggregates = BatchAggregates()
        self.rejected: list[tuple[int, str]] = []
        """``(image index, reason)`` of images left out for non-finite logits (skip mode)."""
        self._nonfinite: dict[str, np.ndarray] = {}
        self._batch: BatchInput | None = None
        self._first_batch_done = False

    # -- helpers -------------------------------------------------------------------------

    def _target(self, batch: BatchInput) -> Tensor | None:
        """The class every map explains: None (each pass its own prediction) or the labels."""
        if self.config.target == "label":
            if bool((batch.labels < 0).any()):
                raise ValueError("target='label' needs known labels; this dataset has unlabelled images")
            return batch.labels
        return None

    def _explain_many(self, run: RunExtractor, images: list[Tensor], target: Tensor | None = None) -> list[SalienceOutput]:
        """One salience pass over several image variants of the same batch, concatenated.

        Variants are packed into passes of at most ``batch_size`` images, so a pass is
        as large as the configured batch whatever the number of variants.
        """
        if not images:
            return []
        b = images[0].shape[0]
        per_pass = max(1, self.config.batch_size // max(b, 1))
        outs: list[SalienceOutput] = []
        for start in range(0, len(images), per_pass):
            chunk = images[start : start + per_pass]
            # A single variant goes as it is (contiguous), without a copy through cat.
            x = chunk[0].contiguous() if len(chunk) == 1 else torch.cat(chunk, dim=0)
            tgt = None if target is None else target.repeat(len(chunk))
            out = run.extractor(x, target=tgt)
            self._flag(run.name, out.logits)
            for k in range(len(chunk)):
                sl = slice(k * b, (k + 1) * b)
                outs.append(SalienceOutput(maps=out.maps[sl], logits=out.logits[sl], target=out.target[sl]))
        return outs

    # -- the batch ------------------------------------------------------------------------

    def _flag(self, run: str, logits: Tensor) -> None:
        """Record which images of the current batch got non-finite logits from ``run``.

        ``logits`` hold ``k * B`` rows (k image variants of the B images, variant-major).
        In stop mode the first non-finite value stops the audit at once.
        """
        batch = self._batch
        assert batch is not None
        b = len(batch.paths)
        bad = ~torch.isfinite(logits.detach()).view(-1, b, logits.shape[-1]).all(dim=2).all(dim=0)
        if not bool(bad.any()):
            return
        mask = bad.cpu().numpy()
        self._nonfinite[run] = self._nonfinite.get(run, np.zeros(b, dtype=bool)) | mask
        if self.config.on_bad_image != "skip" or (b > 1 and bool(mask.all())):
            raise self._nonfinite_error(run, mask)

    def _nonfinite_error(self, run: str, mask: np.ndarray) -> NonFiniteLogitsError:
        batch = self._batch
        assert batch is not None
        idx = np.flatnonzero(mask)
        shown = []
        for i in idx[:5]:
            where = f" ({batch.where[int(i)]})" if batch.where else ""
            shown.append(f"{batch.paths[int(i)]}{where}")
        more = f" and {len(idx) - 5} more" if len(idx) > 5 else ""
        if len(idx) == len(mask) and len(mask) > 1:
            cause = (f"on every image of a batch of {len(mask)}: the checkpoint is broken "
                     "(e.g. training diverged); retrain or leave this run out")
        else:
            cause = (f"on {len(idx)} image(s): {', '.join(shown)}{more}; pass --on-bad-image skip to leave "
                     "such images out (they are listed in rejected.csv)")
        if self.config.amp:
            cause += " (mixed precision can overflow: try without --amp)"
        return NonFiniteLogitsError(
            f"run {run!r} (group {self.group!r}, dataset {self.dataset!r}) gives non-finite logits "
            f"(NaN or infinity) {cause}",
            run,
            [int(batch.indices[int(i)]) for i in idx],
        )

    def process(self, batch: BatchInput, rows: RowBuffer, generator: torch.Generator) -> dict[str, Tensor]:
        """Add every row of this batch to ``rows``; return the clean maps per run.

        Rows are added only when every pass of every run gave finite logits for the images
        they describe; see the module docstring for what happens otherwise.
        """
        self._nonfinite = {}
        self._batch = batch
        deferred: list[dict[str, object]] = []
        try:
            clean_maps = self._process(batch, deferred, generator)
        finally:
            self._batch = None
        if self._nonfinite:
            bad = np.logical_or.reduce(list(self._nonfinite.values()))
            names = sorted(r for r, m in self._nonfinite.items() if m.any())
            culprits = ("run " if len(names) == 1 else "runs ") + ", ".join(repr(r) for r in names)
            for i in np.flatnonzero(bad):
                self.rejected.append((int(batch.indices[int(i)]),
                                      f"non-finite logits (NaN or infinity) from {culprits} of group "
                                      f"{self.group!r}; left out of this group's results"))
            keep = np.flatnonzero(~bad)
            if keep.size == 0:
                return {}
            return self.process(batch.subset(keep), rows, generator)
        for kwargs in deferred:
            rows.add(**kwargs)  # type: ignore[arg-type]
        for name, maps in clean_maps.items():
            self.aggregates.add_maps(name, maps)
        return clean_maps

    def _process(self, batch: BatchInput, rows: list[dict[str, object]], generator: torch.Generator) -> dict[str, Tensor]:
        """Run every selected measure on this batch, collecting rows (keyword arguments of :meth:`RowBuffer.add`).

        The loop: shared image variants are made once (each measure's
        :meth:`~salience_audit.measures.base.Measure.shared_variants`, in registry order);
        then per run one clean salience pass, and each measure's ``run_rows`` in order (a
        shared variant is explained once per run, on the first request); then each
        measure's ``group_rows`` with every run.
        """
        target = self._target(batch)
        emit = self._emitter(batch, rows)
        ctx = self._context(batch, generator)
        for measure in self.measures:
            ctx.variants.update(measure.shared_variants(ctx))

        views: list[RunView] = []
        for run in self.runs:
            clean = run.extractor(batch.images, target=target)
            self._flag(run.name, clean.logits)
            view = RunView(
                run.name,
                SalienceOutput(maps=clean.maps.detach(), logits=clean.logits, target=clean.target),
                explain=functools.partial(self._explain_many, run, target=target),
                forward=functools.partial(self._forward, run),
                input_size=self.input_size,
                variants=ctx.variants,
                upscale=self.conventions.upscale,
            )
            for measure in self.measures:
                measure.run_rows(ctx, view, emit)
            views.append(view)
            if not self._first_batch_done and batch.images.device.type == "cpu":
                # A run's first batch also checks the forward path against autograd passes, whose
                # freed activations glibc keeps mapped; give them back before the next run (host_memory.py).
                return_freed_memory()
        for measure in self.measures:
            measure.group_rows(ctx, views, emit)
        self._first_batch_done = True
        return {v.name: v.maps for v in views}

    def process_maps(self, batch: BatchInput, maps: dict[str, Tensor], rows: RowBuffer) -> None:
        """Rows of the selected measures that need maps alone, from precomputed maps ``{run: [B, h, w]}``.

        The measures that need no model pass (``needs.passes == 0``: entropy, human agreement,
        cross-run stability, a user measure on maps) run exactly as on maps a model gave;
        detection, noise, transforms, degradation and deletion need a model and are skipped.
        """
        deferred: list[dict[str, object]] = []
        emit = self._emitter(batch, deferred)
        ctx = self._context(batch, None)
        measures = [m for m in self.measures if m.needs.passes == 0 and not m.always]
        views = [RunView.of_maps(name, run_maps, self.input_size, self.conventions.upscale)
                 for name, run_maps in maps.items()]
        for view in views:
            for measure in measures:
                measure.run_rows(ctx, view, emit)
        for measure in measures:
            measure.group_rows(ctx, views, emit)
        for kwargs in deferred:
            rows.add(**kwargs)  # type: ignore[arg-type]
        for name, run_maps in maps.items():
            self.aggregates.add_maps(name, run_maps)

    def _context(self, batch: BatchInput, generator: torch.Generator | None) -> BatchContext:
        return BatchContext(
            images=batch.images,
            labels=batch.labels,
            input_size=self.input_size,
            config=self.config,
            generator=generator,
            human_maps=batch.human_maps,
            has_human_map=batch.has_human_map,
            conventions=self.conventions,
        )

    def _emitter(self, batch: BatchInput, rows: list[dict[str, object]]) -> Emit:
        """``emit(run, measure, variant, values, run_b=None)``: one row per image of ``batch`` into ``rows`` (a pair of runs: ``run`` and ``run_b``)."""
        labels_np = to_numpy(batch.labels).astype(np.int64)

        def emit(run: str, measure: str, variant: str, values: np.ndarray | Tensor, run_b: str | None = None) -> None:
            rows.append(dict(
                dataset=self.dataset,
                paths=batch.paths,
                indices=batch.indices,
                labels=labels_np,
                group=self.group,
                run=run,
                measure=measure,
                variant=variant,
                values=to_numpy(values),
                run_b=run_b,
            ))

        return emit

    @torch.no_grad()
    def _forward(self, run: RunExtractor, images: Tensor) -> Tensor:
        """Logits of a plain forward pass of ``run`` (no map, the extractor's precision), checked for finiteness."""
        logits = run.extractor.logits(images)
        self._flag(run.name, logits)
        return logits
