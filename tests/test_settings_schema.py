"""The one settings schema: any value of any key or flag gives settings or a message, never a traceback.

Hypothesis draws config mappings (known and unknown keys, values of every YAML type,
NaN and infinities, nested lists and mappings) and flag values; the schema must either
accept them (and then build an :class:`AuditConfig` whose values obey the documented
ranges) or raise :class:`InputError` naming the key. The same mappings written as YAML
files go through the real command line, which must end with exit status 2 and a
``salience-audit: error:`` line (nothing to audit exists), never a traceback.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.settings import AuditSettings, settings_from_sources
from salience_audit.cli import main
from salience_audit.errors import EXIT_BAD_INPUT, EXIT_USAGE, InputError

KEYS = sorted(AuditSettings.model_fields)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["all", "entropy", "entropy,noise", "gradcam", "cpu", "cuda:0", "skip", "label", "test,train",
                     "0.7", "1e3", "ray", "runs/*"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
configs = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), values, max_size=6)


def _check_accepted(s: AuditSettings) -> None:
    config = s.audit_config()
    assert isinstance(config, AuditConfig)
    assert config.batch_size >= 1 and config.shard_size >= 1 and config.deletion_steps >= 1
    assert config.num_workers >= 0 and config.gallery_size >= 0
    assert 0.0 <= config.threshold <= 1.0 and math.isfinite(config.threshold)
    assert all(0.0 <= a <= 1.0 for a in config.noise_levels) and 0.0 in config.noise_levels
    assert s.groups and s.manifests and s.splits


@settings(max_examples=150, deadline=None)
@given(config=configs, flags=st.dictionaries(st.sampled_from(KEYS), values, max_size=3))
def test_schema_gives_settings_or_a_message(config, flags):
    try:
        s = settings_from_sources(config, flags, "c.yaml")
    except InputError as err:
        assert str(err)  # a message, naming the key
    else:
        _check_accepted(s)


@settings(max_examples=100, deadline=None)
@given(config=configs)
def test_required_keys_present_random_rest(config):
    base = {"groups": {"g": "runs/*"}, "manifests": ["m.csv"]}
    try:
        s = settings_from_sources({**base, **config}, None, "c.yaml")
    except InputError as err:
        assert "c.yaml" in str(err) or "--" in str(err) or "missing" in str(err)
    else:
        _check_accepted(s)


def _yaml_safe(value):
    return yaml.safe_dump(value, allow_unicode=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
def test_command_line_never_shows_a_traceback(tmp_path_factory, capsys, config):
    folder = tmp_path_factory.mktemp("cfg")
    path = Path(folder) / "c.yaml"
    path.write_text(_yaml_safe(config), encoding="utf-8")
    config.pop("out", None)
    try:
        code = main(["audit", "--config", str(path), "--out", str(Path(folder) / "out"), "--quiet", "--no-report"])
    except SystemExit as exc:  # argparse only; flags here are fixed and valid
        pytest.fail(f"argparse exit {exc.code}")
    err = capsys.readouterr().err
    assert code in (EXIT_BAD_INPUT, EXIT_USAGE), err
    assert err.startswith("salience-audit: error:") or "salience-audit: warning:" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", 0), ("shard_size", -1), ("deletion_steps", 0), ("threshold", 1.01), ("threshold", float("inf")),
     ("noise_levels", [0.5, float("nan")]), ("seed", -1), ("gallery_size", -2), ("num_workers", -1)],
)
def test_ranges(key, value):
    with pytest.raises(InputError, match=key):
        settings_from_sources({"groups": {"g": "r"}, "manifests": ["m.csv"], key: value}, None, "c.yaml")


def test_flags_win_and_are_named():
    s = settings_from_sources({"groups": {"g": "r"}, "manifests": "m.csv", "batch_size": 4}, {"batch_size": 8})
    assert s.batch_size == 8 and s.manifests == ["m.csv"]
    with pytest.raises(InputError, match=r"^--batch-size: input should be greater than or equal to 1, got 0"):
        settings_from_sources({"groups": {"g": "r"}, "manifests": "m.csv"}, {"batch_size": 0})


def test_audit_config_is_checked_by_the_same_schema():
    with pytest.raises(InputError, match=r"AuditConfig.deletion_steps: input should be greater than or equal to 1"):
        AuditConfig(deletion_steps=0)
    with pytest.raises(InputError, match=r"AuditConfig.threshold: expected a number, got '0.7'"):
        AuditConfig(threshold="0.7")  # type: ignore[arg-type]
    assert AuditConfig(measures="entropy,noise").measures == ("entropy", "noise")  # type: ignore[arg-type]
