"""Architecture registry and the model wrapper used by every stage."""

from salience_audit.models.audit_model import AuditModel, load_run, load_trusted_module
from salience_audit.models.registry import (
    ARCHITECTURES,
    ArchSpec,
    build_model,
    get_spec,
    list_architectures,
)
from salience_audit.models.small_cnn import SmallCNN

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "AuditModel",
    "SmallCNN",
    "build_model",
    "get_spec",
    "list_architectures",
    "load_run",
    "load_trusted_module",
]
