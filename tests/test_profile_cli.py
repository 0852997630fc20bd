"""`--profile study|default`: the flag and the config key, audit.json, the report's first screen,
and the refusal to compare or resume across profiles."""

from __future__ import annotations

import json

import pandas as pd
from fixtures_audit import audit_setup  # noqa: F401  (session fixture)

from salience_audit.cli import main
from salience_audit.errors import EXIT_BAD_INPUT


def _audit(setup, out, *extra: str) -> int:
    return main(["audit", *setup.group_flags(), "--manifest", str(setup.manifest), "--measures", "entropy,transforms",
                 "--device", "cpu", "--out", str(out), "--quiet", *extra])


def test_profile_flag_config_key_report_and_refusals(audit_setup, tmp_path, capsys):  # noqa: F811
    study, default = tmp_path / "study", tmp_path / "default"
    assert _audit(audit_setup, study, "--profile", "study") == 0
    assert _audit(audit_setup, default) == 0

    meta = json.loads((study / "audit.json").read_text())
    assert meta["profile"] == "study" and meta["config"]["profile"] == "study"
    assert json.loads((default / "audit.json").read_text())["profile"] == "default"
    assert json.loads((study / "summary.json").read_text())["audit"]["profile"] == "study"

    html = (study / "report" / "index.html").read_text()
    overview = html[: html.index("How to read this report")]
    assert "profile: study" in overview and "Profile: study" in overview
    assert "Profile: default" in (default / "report" / "index.html").read_text()

    # the equivariance maps follow the profile (PIL upscale of floored maps), the entropy does not
    rows_s, rows_d = pd.read_parquet(study / "results"), pd.read_parquet(default / "results")
    key = ["run", "index", "measure", "variant"]
    both = rows_s.merge(rows_d, on=key, suffixes=("_s", "_d"))
    ent = both[both["measure"] == "entropy"]
    assert (ent["value_s"] == ent["value_d"]).all()
    eq = both[both["measure"] == "equivariance"]
    assert (eq["value_s"] - eq["value_d"]).abs().max() > 0

    # comparing audits of different profiles is refused with a message naming both
    capsys.readouterr()
    assert main(["report", str(study), "--compare-with", str(default)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "different profiles" in err and "'study'" in err and "'default'" in err

    # resuming a study audit with the default profile is refused (the plan changed)
    assert _audit(audit_setup, study) == EXIT_BAD_INPUT
    assert "profile" in capsys.readouterr().err


def test_profile_from_config_file_and_bad_value(audit_setup, tmp_path, capsys):  # noqa: F811
    config = tmp_path / "audit.toml"
    config.write_text('profile = "study"\nmeasures = "entropy"\ndevice = "cpu"\n')
    out = tmp_path / "o"
    assert main(["audit", "--config", str(config), *audit_setup.group_flags(), "--manifest", str(audit_setup.manifest),
                 "--out", str(out), "--quiet", "--no-report"]) == 0
    assert json.loads((out / "audit.json").read_text())["profile"] == "study"

    config.write_text('profile = "paper"\n')
    capsys.readouterr()
    assert main(["audit", "--config", str(config), *audit_setup.group_flags(), "--manifest", str(audit_setup.manifest),
                 "--out", str(tmp_path / "p"), "--quiet"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "profile" in err and "'default' or 'study'" in err and "audit.toml" in err


def test_study_profile_refuses_reduced_precision_and_channels_last(audit_setup, tmp_path, capsys):  # noqa: F811
    """Bit-for-bit parity cannot hold under --amp (every map changes) or --channels-last (convolutions
    round differently): refused before anything is written, the message naming the flags."""
    for flags, named in ((["--amp"], "--amp would"), (["--amp", "--channels-last"], "--amp and --channels-last would")):
        out = tmp_path / "-".join(f.strip("-") for f in flags)
        capsys.readouterr()
        assert _audit(audit_setup, out, "--profile", "study", *flags) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert "profile 'study'" in err and named in err and "Traceback" not in err
        assert not out.exists() or not any(out.iterdir())
    assert _audit(audit_setup, tmp_path / "default-amp", "--amp", "--channels-last", "--no-report") == 0
    meta = json.loads((tmp_path / "default-amp" / "audit.json").read_text())
    assert meta["config"]["amp"] is True and meta["config"]["channels_last"] is True
