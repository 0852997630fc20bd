"""All measures for one batch of images and one group of runs, sharing every map.

For a batch x and runs r = 1..N of a group, each (run, image variant) gets one
salience pass (forward + backward for gradient methods), done on the whole batch
of that variant at once; every measure that needs a map reads it from there:

- clean maps S_r(x): detection, entropy, human agreement, noise a = 0, transform
  identity, degradation reference, stability (all runs of the batch together);
- noisy images (salt and pepper, shared by all runs): noise curves;
- the 12 non-identity geometric variants (shared by all runs): equivariance;
- guided-blur images (one per run, they depend on the run's own map): degradation.

Non-finite logits (NaN or infinity, from a broken checkpoint or an fp16 overflow) never
become rows: every pass is checked, and an image for which any pass of any run is not
finite either stops the audit with a :class:`NonFiniteLogitsError` naming the run and the
image (``on_bad_image="stop"``) or is left out of the batch's rows and reported in
:attr:`BatchAuditor.rejected` (``"skip"``). A run that is non-finite on every image of a
batch is broken and always stops the audit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.conventions import Conventions
from salience_audit.errors import ModelError
from salience_audit.measures import deletion, entropy, similarity, stability
from salience_audit.perturb import geometry
from salience_audit.results.schema import RowBuffer
from salience_audit.salience.extract import SalienceExtractor, SalienceOutput
from salience_audit.salience.normalize import to_uint8_levels

SYNTHETIC = 1


def _np(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def noise_variant_name(amount: float) -> str:
    """``a=0.05`` style name of a noise level (``%g`` formatting)."""
    return f"a={amount:g}"


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
        s = _np(maps.sum(dim=0))
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
        self.measures = set(config.measures)
        self.variants = geometry.geometric_variants(input_size)
        self.conventions = Conventions(config.profile)
        self.aggregates = BatchAggregates()
        self.rejected: list[tuple[int, str]] = []
        """``(image index, reason)`` of images left out for non-finite logits (skip mode)."""
        self._nonfinite: dict[str, np.ndarray] = {}
        self._batch: BatchInput | None = None

    # -- helpers -------------------------------------------------------------------------

    def _target(self, batch: BatchInput) -> Tensor | None:
        if self.config.target == "label":
            if bool((batch.labels < 0).any()):
                raise ValueError("target='label' needs known labels; this dataset has unlabelled images")
            return batch.labels
        return None

    @staticmethod
    def _score(logits: Tensor) -> Tensor:
        return torch.softmax(logits.float(), dim=1)[:, SYNTHETIC]

    def _correct(self, logits: Tensor, labels: Tensor) -> np.ndarray:
        """1 where the decision (Synthetic when score > threshold) equals the label; NaN when unlabelled.

        At the default threshold 0.5 this is the argmax of the two logits.
        """
        pred = (self._score(logits) > self.config.threshold).to(labels.dtype)
        correct = _np((pred == labels).to(torch.float64))
        correct[_np(labels) < 0] = np.nan
        return correct

    def _explain_many(self, run: RunExtractor, images: list[Tensor], target: Tensor | None) -> list[SalienceOutput]:
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
        """Compute every row of this batch into ``rows`` (keyword arguments of :meth:`RowBuffer.add`)."""
        cfg = self.config
        x = batch.images
        target = self._target(batch)
        add = self._adder(batch, rows)

        # Image variants shared by every run: made once per batch.
        conv = self.conventions
        noisy_levels = (
            [a for a in cfg.noise_levels if a > 0 or conv.noise_at_zero] if "noise" in self.measures else []
        )
        noisy = [conv.noisy(x, a, generator) for a in noisy_levels]
        moved_variants = [v for v in self.variants if v.name != "identity"] if "transforms" in self.measures else []
        moved = geometry.apply_all(moved_variants, x)

        clean_maps: dict[str, Tensor] = {}
        for run in self.runs:
            clean = run.extractor(x, target=target)
            self._flag(run.name, clean.logits)
            maps = clean.maps.detach()
            clean_maps[run.name] = maps
            score = self._score(clean.logits)
            add(run.name, "score", "", score)
            add(run.name, "correct", "", self._correct(clean.logits, batch.labels))

            self._map_rows(run.name, maps, batch, add)

            maps_up = conv.upscale(maps, self.input_size) if (moved or "degradation" in self.measures or "deletion" in self.measures) else None

            if noisy_levels:
                outs = self._explain_many(run, noisy, target)
                self._noise_rows(run.name, maps, score, clean.logits, noisy_levels, outs, batch.labels, add)

            if moved:
                outs = self._explain_many(run, moved, target)
                self._transform_rows(run.name, maps_up, score, outs, moved_variants, add)

            if "degradation" in self.measures:
                assert maps_up is not None
                degraded = [conv.guided_blur(x, maps_up, m) for m in ("background", "object")]
                outs = self._explain_many(run, degraded, target)
                for mode, out in zip(("background", "object"), outs):
                    add(run.name, "degrade_score_change", mode, self._score(out.logits) - score)
                    add(run.name, "degrade_correct", mode, self._correct(out.logits, batch.labels))
                    add(run.name, "degrade_ssim", mode, similarity.ssim_maps(out.maps.detach(), maps))

            if "deletion" in self.measures:
                assert maps_up is not None
                self._deletion_rows(run, x, maps_up, clean.target, add, generator)

        self._stability_rows(clean_maps, add)
        return clean_maps

    def process_maps(self, batch: BatchInput, maps: dict[str, Tensor], rows: RowBuffer) -> None:
        """Rows of the measures that need only maps, from precomputed maps ``{run: [B, h, w]}``.

        Entropy, human agreement and cross-run stability, exactly as for maps a model gave;
        no detection, noise, transform or degradation rows (they need a model).
        """
        deferred: list[dict[str, object]] = []
        add = self._adder(batch, deferred)
        for name, run_maps in maps.items():
            self._map_rows(name, run_maps, batch, add)
        self._stability_rows(maps, add)
        for kwargs in deferred:
            rows.add(**kwargs)  # type: ignore[arg-type]
        for name, run_maps in maps.items():
            self.aggregates.add_maps(name, run_maps)

    # -- measure groups -----------------------------------------------------------------

    def _adder(self, batch: BatchInput, rows: list[dict[str, object]]) -> Callable[..., None]:
        """``add(run, measure, variant, values, run_b=None)``: one row per image of ``batch`` into ``rows``
        (a pair of runs: ``run`` and ``run_b``)."""
        labels_np = _np(batch.labels).astype(np.int64)

        def add(run: str, measure: str, variant: str, values: np.ndarray | Tensor, run_b: str | None = None) -> None:
            vals = _np(values) if isinstance(values, Tensor) else values
            rows.append(dict(
                dataset=self.dataset,
                paths=batch.paths,
                indices=batch.indices,
                labels=labels_np,
                group=self.group,
                run=run,
                measure=measure,
                variant=variant,
                values=vals,
                run_b=run_b,
            ))

        return add

    def _map_rows(self, run: str, maps: Tensor, batch: BatchInput, add: Callable[..., None]) -> None:
        """Entropy and human-agreement rows of one run's maps."""
        if "entropy" in self.measures:
            add(run, "entropy", "", entropy.histogram_entropy(maps))
            add(run, "entropy_norm", "", entropy.normalized_histogram_entropy(maps))
            add(run, "spatial_entropy", "", entropy.spatial_entropy(maps))
        if "human" in self.measures and batch.human_maps is not None and batch.has_human_map is not None:
            self._human_rows(run, maps, batch, add)

    def _stability_rows(self, maps: dict[str, Tensor], add: Callable[..., None]) -> None:
        """Pairwise stability rows over the runs (in the group's run order)."""
        if "stability" not in self.measures or len(self.runs) < 2:
            return
        names = [r.name for r in self.runs]
        stacked = torch.stack([maps[n] for n in names])
        for measure, fn in (
            ("stability_ssim", stability.pairwise_ssim),
            ("stability_spearman", stability.pairwise_spearman),
            ("stability_iou", stability.pairwise_topk_iou),
        ):
            pairs, values = fn(stacked)
            for (i, j), vals in zip(pairs, values):
                add(names[i], measure, "", vals, run_b=names[j])

    def _human_rows(self, run: str, maps: Tensor, batch: BatchInput, add: Callable[..., None]) -> None:
        assert batch.human_maps is not None and batch.has_human_map is not None
        has = batch.has_human_map.to(torch.bool)
        if not bool(has.any()):
            return
        human = batch.human_maps.to(maps.device, torch.float32)
        if tuple(human.shape[-2:]) != tuple(maps.shape[-2:]):
            human = torch.nn.functional.interpolate(
                human.unsqueeze(1), size=tuple(maps.shape[-2:]), mode="area"
            ).squeeze(1)
        from salience_audit.salience.normalize import minmax_normalize

        human = minmax_normalize(human)
        ssim_v = _np(similarity.ssim_maps(maps, human))
        rank_v = _np(similarity.spearman(maps, human))
        missing = ~_np(has).astype(bool)
        ssim_v[missing] = np.nan
        rank_v[missing] = np.nan
        add(run, "human_ssim", "", ssim_v)
        add(run, "human_spearman", "", rank_v)

    def _noise_rows(
        self,
        run: str,
        maps: Tensor,
        score: Tensor,
        logits: Tensor,
        noisy_levels: list[float],
        outs: list[SalienceOutput],
        labels: Tensor,
        add: Callable[..., None],
    ) -> None:
        """Noise rows; ``outs`` are the passes of ``noisy_levels`` (amount 0, when among them, replaces the clean pass)."""
        levels = list(self.config.noise_levels)
        by_level: dict[float, tuple[Tensor, Tensor, Tensor]] = {0.0: (maps, score, logits)}
        for a, out in zip(noisy_levels, outs):
            by_level[a] = (out.maps.detach(), self._score(out.logits), out.logits)
        curves: dict[str, list[np.ndarray]] = {"score": [], "correct": [], "ssim": [], "entropy": []}
        for a in levels:
            m, s, lg = by_level[a]
            name = noise_variant_name(a)
            ssim_v = _np(similarity.ssim_maps(m, maps))
            ent_v = _np(entropy.normalized_histogram_entropy(m))
            add(run, "noise_score", name, s)
            correct_v = self._correct(lg, labels)
            add(run, "noise_correct", name, correct_v)
            add(run, "noise_ssim", name, ssim_v)
            add(run, "noise_entropy", name, ent_v)
            curves["score"].append(_np(s))
            curves["correct"].append(correct_v)
            curves["ssim"].append(ssim_v)
            curves["entropy"].append(ent_v)
        xs = np.asarray(levels, dtype=np.float64)
        for key, values in curves.items():
            add(run, f"noise_auc_{key}", "", np.trapezoid(np.stack(values, axis=1), xs, axis=1))

    def _transform_rows(
        self,
        run: str,
        maps_up: Tensor | None,
        score: Tensor,
        outs: list[SalienceOutput],
        variants: list[geometry.GeometricVariant],
        add: Callable[..., None],
    ) -> None:
        assert maps_up is not None
        ones = np.ones(score.shape[0])
        add(run, "equivariance", "identity", ones)
        add(run, "invariance", "identity", ones)
        add(run, "transform_score_change", "identity", np.zeros(score.shape[0]))
        # 8-bit levels made once per map (what ssim_maps would do on every call); a geometric
        # variant only moves pixels, so it commutes with the pointwise quantisation.
        clean_q = to_uint8_levels(maps_up)
        moved_maps = torch.cat([out.maps.detach() for out in outs])
        moved_q = to_uint8_levels(self.conventions.upscale(moved_maps, self.input_size))
        equivariance, invariance = self._transform_ssims(clean_q, moved_q, variants)
        for k, (variant, out) in enumerate(zip(variants, outs)):
            add(run, "equivariance", variant.name, equivariance[k])
            add(run, "invariance", variant.name, invariance[k])
            add(run, "transform_score_change", variant.name, self._score(out.logits) - score)

    @staticmethod
    def _transform_ssims(
        clean_q: Tensor, moved_q: Tensor, variants: list[geometry.GeometricVariant]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Equivariance and invariance SSIMs (``[B]`` each) of every variant.

        ``clean_q [B, H, W]`` are the 8-bit upscaled clean maps, ``moved_q [V * B, H, W]``
        those of the V variants (variant-major). Equivariance compares variant v's map with
        T_v(clean), invariance with the clean map. The window means of each map are computed
        once (the clean map's for all variants, each variant map's for both comparisons).
        """
        b = clean_q.shape[0]
        clean_moments = similarity.ssim_window_moments(clean_q)
        transformed_all = geometry.apply_all(variants, clean_q)
        square = clean_moments.shape[-1] == clean_moments.shape[-2]
        equivariance, invariance = [], []
        for k, variant in enumerate(variants):
            moved = moved_q[k * b : (k + 1) * b]
            moved_moments = similarity.ssim_window_moments(moved)
            transformed = transformed_all[k]
            if square and variant.commutes_with_window_means():
                # Flips and quarter turns permute the windows: their means are T(clean means), exactly.
                transformed_moments = variant.apply(clean_moments)
            else:
                transformed_moments = similarity.ssim_window_moments(transformed)
            equivariance.append(similarity.ssim_uint8_with_moments(
                moved, transformed, moved_moments, transformed_moments))
            invariance.append(similarity.ssim_uint8_with_moments(moved, clean_q, moved_moments, clean_moments))
        return equivariance, invariance

    def _deletion_rows(
        self,
        run: RunExtractor,
        x: Tensor,
        maps_up: Tensor,
        target: Tensor,
        add: Callable[..., None],
        generator: torch.Generator,
    ) -> None:
        """Deletion / insertion areas in salience order, and the random-order control of the same areas."""
        model = run.extractor.model
        tgt = target.to(x.device).view(-1, 1)

        @torch.inference_mode()
        def score_fn(images: Tensor) -> Tensor:
            logits = model(images)
            self._flag(run.name, logits)
            probs = torch.softmax(logits.float(), dim=1)
            return probs.gather(1, tgt.repeat(images.shape[0] // tgt.shape[0], 1)).squeeze(1)

        steps = self.config.deletion_steps
        ordered = deletion.deletion_insertion_curves(score_fn, x, maps_up, steps=steps)
        control = deletion.deletion_insertion_curves(
            score_fn, x, maps_up, steps=steps, random_order=True, generator=generator
        )
        add(run.name, "deletion_auc", "", ordered["deletion_auc"])
        add(run.name, "insertion_auc", "", ordered["insertion_auc"])
        add(run.name, "deletion_auc_random", "", control["deletion_auc"])
        add(run.name, "insertion_auc_random", "", control["insertion_auc"])
