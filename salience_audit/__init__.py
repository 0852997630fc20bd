"""salience-audit: explain image classifiers at scale through their salience maps.

The stable surface (``import salience_audit as sa``):

- ``sa.measures``: the measures, as functions on tensors or numpy arrays returning
  per-image values (``sa.measures.entropy(maps)``, ``sa.measures.stability([maps_a, maps_b])``,
  ``sa.measures.noise_reaction(explainer, images)``, ``sa.measures.equivariance(explainer, images)``,
  ``sa.measures.degradation(explainer, images, labels)``, ``sa.measures.deletion(...)``,
  ``sa.measures.human_agreement(maps, human_maps)``), as classes with ``update()`` /
  ``compute()`` (``sa.measures.Entropy()`` ...), and ``sa.measures.register`` for your own;
- ``sa.AuditModel``: a classifier with its preprocessing and CAM layer
  (``sa.AuditModel.from_module(net, cam_layer="layer4", input_size=224)``);
- ``sa.SalienceExtractor``: batched salience maps of an ``AuditModel``
  (``sa.SalienceExtractor(model, "gradcam")(images)`` -> maps, logits, target);
- ``sa.load_run(folder)``: an ``AuditModel`` from a training run folder;
- ``sa.AuditConfig`` and ``sa.run_audit(groups, datasets, out_dir, config)``: the whole
  audit (rows, ``summary.json``, HTML report) over groups of runs and datasets;
- ``sa.read_manifest(path)``: the images of a manifest CSV or class-per-folder directory;
- ``sa.read_results(out_dir)``: an audit folder as an object (``.rows(...)`` lazy and filtered,
  ``.summary()``, ``.report_path``; shown inline in Jupyter).

Everything else lives in subpackages (``salience_audit.perturb``, ``.stats``, ``.results``,
``.report`` ...) and may change between versions. The names are loaded on first use, so
``import salience_audit`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("salience-audit")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

_EXPORTS: dict[str, tuple[str, str | None]] = {
    "measures": ("salience_audit.measures", None),
    "AuditModel": ("salience_audit.models.audit_model", "AuditModel"),
    "load_run": ("salience_audit.models.audit_model", "load_run"),
    "SalienceExtractor": ("salience_audit.salience.extract", "SalienceExtractor"),
    "AuditConfig": ("salience_audit.audit.config", "AuditConfig"),
    "run_audit": ("salience_audit.audit.pipeline", "run_audit"),
    "read_manifest": ("salience_audit.data.manifest", "read_manifest"),
}

__all__ = ["__version__", *sorted([*_EXPORTS, "read_results"])]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from salience_audit import measures
    from salience_audit.audit.config import AuditConfig
    from salience_audit.audit.pipeline import run_audit
    from salience_audit.data.manifest import read_manifest
    from salience_audit.models.audit_model import AuditModel, load_run
    from salience_audit.salience.extract import SalienceExtractor


def read_results(path: str):  # noqa: ANN201 - AuditResults, imported lazily (pandas/pyarrow)
    """The audit folder at ``path`` as an :class:`~salience_audit.notebook.AuditResults` (rows, summary, report)."""
    from salience_audit.notebook import AuditResults

    return AuditResults(path)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = import_module(module) if attr is None else getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'salience_audit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
