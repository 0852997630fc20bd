"""Confidence intervals for a model family's mean when runs AND images vary (crossed design).

An audit measures every image x with every trained run r of a group: a crossed design
``Y[r, i]``. A claim about the *family* (e.g. "guided models are more focused") is about
the population of runs that the training recipe produces and the population of images,
so both sources of variance belong in its CI. Model (only used to reason about it):

    Y[r, i] = mu + a_r + b_i + e_ri,   Var a = s_a^2 (runs), Var b = s_b^2 (images), Var e = s_e^2

and the group mean Ybar has Var Ybar = s_a^2 / R + s_b^2 / I + s_e^2 / (R I).

The two-way ("pigeonhole", Owen 2007) bootstrap resamples runs and images independently
with replacement and takes the mean of the selected cells. Its variance (the limit of
infinitely many resamples) has a closed form in the moments below, derived from the
multinomial weights (w_r of runs, v_i of images, E w_r w_s = 1/R^2 - 1/R^3 for r != s,
1/R^2 + (R - 1)/R^3 for r = s):

    V* = ((R - 1) / R) * S_R^2 / R  +  [ (1 - 1/R) ((I - 1) / I) S_I^2 + W_plug / R ] / I

with m_r the run means over images, S_R^2 their sample variance (ddof 1), ybar_i the image
means over runs, S_I^2 their sample variance (ddof 1) and W_plug the mean over runs of the
within-run plug-in variances (ddof 0). :func:`pigeonhole_bootstrap` draws the resamples
and tests check it against this formula.

The bootstrap's plug-in variances shrink each component by (n - 1)/n; with 5 runs the
run component is 20% too small, and a normal quantile ignores that S_R^2 rests on R - 1
degrees of freedom (a percentile two-way bootstrap covers ~85% with 5 runs). The interval
used by the report corrects both (small-sample correction at run level):

    V_run = S_R^2 / R,   V_img = [ (1 - 1/R) S_I^2 + W / R ] / I   (W: within-run variances, ddof 1)
    SE = sqrt(V_run + V_img),  nu = (V_run + V_img)^2 / (V_run^2 / (R - 1) + V_img^2 / (I - 1))
    CI = Ybar -+ t_{nu, (1 + level)/2} * SE

(Welch-Satterthwaite degrees of freedom: nu is close to R - 1 when runs dominate and to
I - 1 when images do). Under the model E[V_run + V_img] = Var Ybar + s_e^2 (2R - 1)/(R^2 I):
slightly conservative. All functions broadcast over leading axes, so a simulation of many
replicates is one call. ``docs/statistics.md`` reports the coverage (simulation test in
``tests/test_stats_crossed.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = ["CrossedMoments", "crossed_ci", "image_only_ci", "pigeonhole_bootstrap", "pigeonhole_variance"]


@dataclass(frozen=True)
class CrossedMoments:
    """The moments of a runs x images table that the crossed CI needs (arrays broadcast).

    Attributes:
        n_runs: R, runs in the group.
        n_images: I, images (per run; the design is assumed balanced).
        mean: grand mean Ybar = mean of the run means (= mean of the image means when balanced).
        run_var: S_R^2, sample variance (ddof 1) of the R run means.
        image_var: S_I^2, sample variance (ddof 1) of the I image means (each over the R runs).
        within_var: W, mean over runs of each run's variance over its images (ddof 1).
    """

    n_runs: np.ndarray | int
    n_images: np.ndarray | int
    mean: np.ndarray | float
    run_var: np.ndarray | float
    image_var: np.ndarray | float
    within_var: np.ndarray | float

    @classmethod
    def from_table(cls, table: np.ndarray) -> CrossedMoments:
        """Moments of ``table[..., r, i]`` (runs x images, no NaN; leading axes are replicates)."""
        y = np.asarray(table, dtype=np.float64)
        if y.ndim < 2:
            raise ValueError(f"a runs x images table needs 2 axes, got shape {y.shape}")
        n_runs, n_images = y.shape[-2], y.shape[-1]
        run_means = y.mean(axis=-1)
        image_means = y.mean(axis=-2)
        ddof_r = 1 if n_runs > 1 else 0
        ddof_i = 1 if n_images > 1 else 0
        with np.errstate(all="ignore"):
            return cls(
                n_runs=n_runs,
                n_images=n_images,
                mean=run_means.mean(axis=-1),
                run_var=run_means.var(axis=-1, ddof=ddof_r) if n_runs > 1 else np.full(run_means.shape[:-1], np.nan),
                image_var=image_means.var(axis=-1, ddof=ddof_i),
                within_var=y.var(axis=-1, ddof=ddof_i).mean(axis=-1),
            )

    @classmethod
    def from_run_moments(
        cls, run_n: np.ndarray, run_mean: np.ndarray, run_m2: np.ndarray, image_n: int, image_var: float
    ) -> CrossedMoments:
        """Moments from per-run streaming moments (count, mean, M2) and the image means' variance.

        This is what the bounded-memory summary keeps: per run its exact count, mean and
        sum of squared deviations over images, per group the exact variance of the image
        means. ``image_n`` is I; W = mean_r M2_r / (n_r - 1).
        """
        run_n = np.asarray(run_n, dtype=np.float64)
        run_mean = np.asarray(run_mean, dtype=np.float64)
        run_m2 = np.asarray(run_m2, dtype=np.float64)
        n_runs = int(run_mean.size)
        with np.errstate(all="ignore"):
            within = np.where(run_n > 1, run_m2 / np.maximum(run_n - 1, 1), np.nan)
            return cls(
                n_runs=n_runs,
                n_images=int(image_n),
                mean=float(run_mean.mean()) if n_runs else float("nan"),
                run_var=float(run_mean.var(ddof=1)) if n_runs > 1 else float("nan"),
                image_var=float(image_var),
                within_var=float(np.nanmean(within)) if np.isfinite(within).any() else float("nan"),
            )

    def components(self) -> tuple[np.ndarray, np.ndarray]:
        """(V_run, V_img): the corrected run and image parts of Var Ybar (see the module docstring)."""
        r = np.asarray(self.n_runs, dtype=np.float64)
        i = np.asarray(self.n_images, dtype=np.float64)
        with np.errstate(all="ignore"):
            v_run = np.asarray(self.run_var, dtype=np.float64) / r
            v_img = ((1.0 - 1.0 / r) * np.asarray(self.image_var, dtype=np.float64)
                     + np.asarray(self.within_var, dtype=np.float64) / r) / i
        return v_run, v_img


def pigeonhole_variance(m: CrossedMoments) -> np.ndarray:
    """V*: the variance of the two-way bootstrap mean over infinitely many resamples (closed form, plug-in)."""
    r = np.asarray(m.n_runs, dtype=np.float64)
    i = np.asarray(m.n_images, dtype=np.float64)
    with np.errstate(all="ignore"):
        within_plug = np.asarray(m.within_var) * (i - 1.0) / i
        run_part = (r - 1.0) / r * np.asarray(m.run_var) / r
        image_part = ((1.0 - 1.0 / r) * (i - 1.0) / i * np.asarray(m.image_var) + within_plug / r) / i
    return run_part + image_part


def crossed_ci(m: CrossedMoments, level: float = 0.95) -> dict[str, np.ndarray]:
    """Run x image CI of the family mean: Ybar -+ t_nu SE (see the module docstring).

    Returns ``mean``, ``ci_low``, ``ci_high``, ``se``, ``df`` (nu), ``var_runs`` (V_run),
    ``var_images`` (V_img); NaN where fewer than 2 runs (the run variance is unknown:
    one run says nothing about the family) or fewer than 2 images.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v_run, v_img = m.components()
    r = np.asarray(m.n_runs, dtype=np.float64)
    i = np.asarray(m.n_images, dtype=np.float64)
    with np.errstate(all="ignore"):
        var = v_run + v_img
        denom = np.where(r > 1, v_run**2 / (r - 1.0), np.nan) + np.where(i > 1, v_img**2 / (i - 1.0), np.nan)
        df = np.where(denom > 0, var**2 / denom, r - 1.0)
        df = np.where((r > 1) & (i > 1), df, np.nan)
        se = np.sqrt(var)
        t = sps.t.ppf((1.0 + level) / 2.0, df)
        mean = np.asarray(m.mean, dtype=np.float64)
        low, high = mean - t * se, mean + t * se
    return {"mean": mean, "ci_low": low, "ci_high": high, "se": se, "df": df, "var_runs": v_run, "var_images": v_img}


def image_only_ci(table: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    """The image-level view: CI of the mean of the image means, images the only source of variance.

    Ybar -+ z SE with SE = S_I / sqrt(I) (the normal limit of the percentile bootstrap over
    image means used for "these trained runs"). It is the right interval for "does THIS set
    of runs differ", not for the family: ``docs/statistics.md`` shows its coverage of the
    family mean.
    """
    y = np.asarray(table, dtype=np.float64)
    image_means = y.mean(axis=-2)
    n = image_means.shape[-1]
    mean = image_means.mean(axis=-1)
    se = image_means.std(axis=-1, ddof=1) / np.sqrt(n)
    z = sps.norm.ppf((1.0 + level) / 2.0)
    return {"mean": mean, "ci_low": mean - z * se, "ci_high": mean + z * se, "se": se}


def pigeonhole_bootstrap(table: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``n_boot`` two-way bootstrap means of ``table[r, i]``: runs and images resampled independently.

    Resample b draws R runs and I images with replacement (numpy ``default_rng(seed)``)
    and averages the R x I selected cells: w_b^T Y v_b with w_b, v_b the multinomial count
    vectors divided by R and I (computed as counts, without building the resampled table).
    """
    y = np.asarray(table, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"expected a runs x images table, got shape {y.shape}")
    n_runs, n_images = y.shape
    rng = np.random.default_rng(seed)
    run_w = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs), size=n_boot) / n_runs
    out = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 2_000_000 // max(n_images, 1))
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        img_w = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=stop - start) / n_images
        out[start:stop] = np.einsum("br,ri,bi->b", run_w[start:stop], y, img_w)
    return out
