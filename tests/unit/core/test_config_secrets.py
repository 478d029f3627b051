"""Settings from secret files (SECRETS_DIR), as the charts mount Secrets: a file named after the
field sets it, a variable still wins, a missing directory is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from mevaas_core.config import ConfigError, ServiceSettings, load_settings, read_secret


class KeyedSettings(ServiceSettings):
    execution_kek: str = Field(repr=False)


def test_fields_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "database_url").write_text("postgresql://app:s3cret@db/mevaas\n")
    (tmp_path / "execution_kek").write_text("a2VrCg==")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("EXECUTION_KEK", raising=False)
    settings = load_settings(KeyedSettings)
    assert settings.database_url == "postgresql://app:s3cret@db/mevaas"
    assert settings.execution_kek == "a2VrCg=="
    assert "a2VrCg" not in repr(settings)


def test_a_variable_wins_over_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "execution_kek").write_text("from-file")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("EXECUTION_KEK", "from-env")
    assert load_settings(KeyedSettings).execution_kek == "from-env"
    assert read_secret("EXECUTION_KEK") == "from-env"


def test_a_required_secret_missing_everywhere_names_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("EXECUTION_KEK", raising=False)
    with pytest.raises(ConfigError, match="EXECUTION_KEK"):
        load_settings(KeyedSettings)


def test_a_missing_secrets_dir_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="SECRETS_DIR"):
        load_settings(ServiceSettings)


def test_read_secret_reads_files_for_code_outside_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "db_app_password").write_text("pw\n")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("DB_APP_PASSWORD", raising=False)
    monkeypatch.delenv("DB_OWNER_PASSWORD", raising=False)
    assert read_secret("DB_APP_PASSWORD") == "pw"
    assert read_secret("DB_OWNER_PASSWORD") == ""


def test_bus_credentials_come_only_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTION_KEK", "a2VrCg==")
    monkeypatch.setenv("NATS_URL", "nats://a:1,nats://risk:pw@nats:4222")
    with pytest.raises(ConfigError, match="NATS_URL carries a password in the environment"):
        load_settings(KeyedSettings)
    monkeypatch.delenv("NATS_URL")
    (tmp_path / "nats_url").write_text("nats://risk:pw@nats:4222\n")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    assert load_settings(KeyedSettings).nats_url == "nats://risk:pw@nats:4222"
    monkeypatch.setenv("NATS_URL", "nats://nats:4222")  # a URL without credentials may stay in env
    assert load_settings(KeyedSettings).nats_url == "nats://nats:4222"
