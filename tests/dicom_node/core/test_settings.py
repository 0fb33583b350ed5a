from pathlib import Path

import pytest

from dicom_node.core.settings import SettingsError, load_settings


def test_defaults_put_everything_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(environ={"DICOM_NODE_DATA_DIR": str(tmp_path)})
    assert settings.port == 11112
    assert settings.ae_title == "DICOM_NODE"
    assert settings.spool_dir == tmp_path / "spool"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'node.sqlite'}"
    assert settings.resolved_broker_url.endswith(f"{tmp_path / 'queue.sqlite'}")
    assert settings.embedded_broker and settings.embedded_database
    assert settings.completion.quiet_seconds == 5.0
    assert settings.eligibility.min_slices == 20


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'ae_title = "FROM_FILE"\nport = 104\n[completion]\nquiet_seconds = 9\n'
        '[[allowed_callers]]\nae_title = "PACS"\nhost = "127.0.0.1"\n'
    )
    settings = load_settings(
        config,
        environ={
            "DICOM_NODE_PORT": "4242",
            "DICOM_NODE_COMPLETION__MAX_WAIT_SECONDS": "60",
            "DICOM_NODE_ELIGIBILITY__MODALITIES": '["CT", "PT"]',
        },
    )
    assert settings.ae_title == "FROM_FILE"
    assert settings.port == 4242
    assert settings.completion.quiet_seconds == 9
    assert settings.completion.max_wait_seconds == 60
    assert settings.eligibility.modalities == ("CT", "PT")
    assert settings.allowed_callers[0].ae_title == "PACS"
    assert settings.allowed_callers[0].host == "127.0.0.1"


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('ae_title = "VIA_ENV"\n')
    assert load_settings(environ={"DICOM_NODE_CONFIG": str(config)}).ae_title == "VIA_ENV"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DICOM_NODE_PORT": "abc"}, "port [environment variable DICOM_NODE_PORT]"),
        ({"DICOM_NODE_PORT": "70000"}, "less than or equal to 65535"),
        ({"DICOM_NODE_AE_TITLE": "A\\B"}, "not a valid AE title"),
        ({"DICOM_NODE_AE_TITLE": "THIS_TITLE_IS_TOO_LONG"}, "ae_title"),
        ({"DICOM_NODE_COMPLETION__QUIET_SECONDS": "-1"}, "completion.quiet_seconds"),
        (
            {"DICOM_NODE_ALERTS__MIN_GROWTH_ML": "-5"},
            "alerts.min_growth_ml [environment variable DICOM_NODE_ALERTS__MIN_GROWTH_ML]",
        ),
        ({"DICOM_NODE_DATABASE_URL": "mysql://x"}, "only sqlite:// and postgresql://"),
        ({"DICOM_NODE_HOST": "localhost"}, "not an IP address"),
        ({"DICOM_NODE_ALLOWED_CALLERS": "[{bad json"}, "not valid JSON"),
        (
            {"DICOM_NODE_BOGUS": "1"},
            "bogus [environment variable DICOM_NODE_BOGUS]: unknown setting",
        ),
    ],
)
def test_bad_values_are_named(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=environ)
    assert expected in str(caught.value)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("port = 0\nmin_free_disk_mb = -5\n[eligibility]\nmin_slices = 0\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, environ={})
    problems = caught.value.problems
    assert len(problems) == 3
    assert all(f"file {config}" in p for p in problems)


def test_minimum_growth_of_alerts(tmp_path: Path) -> None:
    from dicom_node.tracking.rule import DEFAULT_MIN_GROWTH_ML
    from dicom_node.tracking.track import rules_of

    assert load_settings(environ={}).alerts.min_growth_ml == DEFAULT_MIN_GROWTH_ML
    config = tmp_path / "node.toml"
    config.write_text("[alerts]\nmin_growth_ml = 0\n")
    assert rules_of(load_settings(config, environ={}).alerts).min_growth_ml == 0
    config.write_text("[alerts]\nmin_growth_ml = -1\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"alerts.min_growth_ml [file {config}]: ")
    assert "greater than or equal to 0" in problem


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("port = [")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken, environ={})


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(environ={"DICOM_NODE_DATA_DIR": str(tmp_path)})
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_example_settings_file_documents_every_setting() -> None:
    from dicom_node.core.settings import Settings

    example = Path(__file__).resolve().parents[3] / "deploy" / "dicom-node.example.toml"
    settings = load_settings(example, environ={})
    assert settings.model_dump(exclude={"data_dir"}) == Settings().model_dump(exclude={"data_dir"})
    text = example.read_text()
    from dicom_node.core.settings import CallingAE, Destination

    names = set(Settings.model_fields) | set(CallingAE.model_fields) | set(Destination.model_fields)
    sections = ("network", "completion", "jobs", "eligibility", "analysis", "results")
    for section in (*sections, "alerts", "priors", "tls"):
        names |= set(type(getattr(settings, section)).model_fields)
    from dicom_node.core.settings import EmailChannel, HL7Channel, WebhookChannel

    for channel in (EmailChannel, HL7Channel, WebhookChannel):
        names |= set(channel.model_fields)
    missing = [name for name in sorted(names) if name not in text]
    assert not missing, f"undocumented settings: {missing}"
