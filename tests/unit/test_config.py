from pathlib import Path

import pytest

from icefloe.config import Settings, load_settings, write_default_config
from icefloe.errors import ConfigError


def test_defaults_put_everything_in_the_home(tmp_path: Path) -> None:
    s = load_settings(env={}, home=tmp_path / "h")
    assert s.spark_master == "local[*]"
    assert s.resolved_catalog_uri == f"sqlite:///{tmp_path / 'h' / 'lake' / 'catalog.db'}"
    assert s.warehouse_path == (tmp_path / "h" / "lake" / "warehouse").resolve().as_uri()
    assert s.resolved_mlflow_uri == f"sqlite:///{(tmp_path / 'h' / 'lake' / 'mlflow.db')}"
    assert s.resolved_platform_db_url == f"sqlite:///{tmp_path / 'h' / 'platform.db'}"
    assert s.resolved_projects_root == (tmp_path / "h" / "projects").resolve()
    assert s.source_of("spark_master") == "default"


def test_default_home_is_dot_icefloe() -> None:
    assert load_settings(env={}).home == Path(".icefloe")


def test_precedence_defaults_file_env_arguments(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text(
        '[icefloe]\nspark_master = "local[1]"\napi_port = 9000\nspark_app_name = "from-file"\n'
    )
    env = {"ICEFLOE_HOME": str(home), "ICEFLOE_API_PORT": "9100", "ICEFLOE_SPARK_UI": "true"}
    s = load_settings(env=env, spark_app_name="from-arg")
    assert s.home == home
    assert s.spark_master == "local[1]" and s.source_of("spark_master") == "file"
    assert s.api_port == 9100 and s.source_of("api_port") == "env"
    assert s.spark_ui is True
    assert s.spark_app_name == "from-arg" and s.source_of("spark_app_name") == "argument"
    assert s.catalog_name == "icefloe" and s.source_of("catalog_name") == "default"


def test_argument_home_beats_env_home(tmp_path: Path) -> None:
    s = load_settings(env={"ICEFLOE_HOME": str(tmp_path / "env")}, home=tmp_path / "arg")
    assert s.home == tmp_path / "arg"


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api_port"):
        load_settings(env={"ICEFLOE_API_PORT": "eighty"}, home=tmp_path)
    with pytest.raises(ConfigError, match="spark_ui"):
        load_settings(env={"ICEFLOE_SPARK_UI": "maybe"}, home=tmp_path)


def test_bad_config_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("spark_master = [unclosed")
    with pytest.raises(ConfigError, match="config.toml"):
        load_settings(env={}, home=tmp_path)
    (tmp_path / "config.toml").write_text('[icefloe]\nno_such_setting = 1\n')
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(env={}, home=tmp_path)


def test_default_config_file_is_written_once_and_parses(tmp_path: Path) -> None:
    s = load_settings(env={}, home=tmp_path)
    assert write_default_config(s) is True
    text = s.config_file.read_text()
    assert write_default_config(s) is False
    assert s.config_file.read_text() == text
    assert load_settings(env={}, home=tmp_path) == Settings(home=tmp_path)


def test_absolute_warehouse_and_catalog_uri_are_kept(tmp_path: Path) -> None:
    s = load_settings(
        env={"ICEFLOE_WAREHOUSE": str(tmp_path / "wh"), "ICEFLOE_CATALOG_URI": "sqlite:///x.db"},
        home=tmp_path,
    )
    assert s.warehouse_path == (tmp_path / "wh").as_uri()
    assert s.resolved_catalog_uri == "sqlite:///x.db"


def test_database_passwords_are_masked_wherever_settings_are_shown(tmp_path: Path) -> None:
    from icefloe.config import mask_password

    url = "postgresql+psycopg://ice:s3cr:et@db.example:5432/icefloe"
    assert mask_password(url) == "postgresql+psycopg://ice:***@db.example:5432/icefloe"
    assert mask_password("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert mask_password("postgresql://ice@db/icefloe") == "postgresql://ice@db/icefloe"
    shown = load_settings(env={"ICEFLOE_PLATFORM_DB_URL": url}, home=tmp_path).as_dict()
    assert "s3cr" not in str(shown)
    assert shown["platform_db_url"].endswith("***@db.example:5432/icefloe")


def test_one_database_url_gives_each_store_its_own_schema_or_file(tmp_path: Path) -> None:
    s = load_settings(env={"ICEFLOE_DATABASE_URL": "postgresql://icefloe:pw@db:5432/lake"},
                      home=tmp_path)
    assert s.resolved_catalog_uri == ("postgresql+psycopg://icefloe:pw@db:5432/lake"
                                      "?options=-csearch_path%3Dicefloe_catalog")
    assert s.resolved_mlflow_uri.endswith("/lake?options=-csearch_path%3Dicefloe_mlflow")
    assert s.resolved_platform_db_url.endswith("?options=-csearch_path%3Dicefloe_platform")
    assert "pw" not in str(s.as_dict())  # masked wherever shown
    # A store's own URL wins; SQLite stores get files of their own beside the one named.
    own = load_settings(env={"ICEFLOE_DATABASE_URL": f"sqlite:///{tmp_path}/all.db",
                             "ICEFLOE_MLFLOW_URI": "sqlite:////elsewhere/mlflow.db"},
                        home=tmp_path)
    assert own.resolved_catalog_uri == f"sqlite:///{tmp_path}/all-catalog.db"
    assert own.resolved_platform_db_url == f"sqlite:///{tmp_path}/all-platform.db"
    assert own.resolved_mlflow_uri == "sqlite:////elsewhere/mlflow.db"
    for bad, named in (("mysql://h/db", "postgresql:// or sqlite:///"),
                       ("postgresql://h/db?options=-c%20x", "options")):
        with pytest.raises(ConfigError, match=named):
            _ = load_settings(env={"ICEFLOE_DATABASE_URL": bad},
                              home=tmp_path).resolved_catalog_uri


def test_jobs_get_their_own_role_or_a_warning(tmp_path: Path) -> None:
    shared = load_settings(env={"ICEFLOE_DATABASE_URL": "postgresql://icefloe:pw@db/lake"},
                           home=tmp_path)
    assert shared.jobs_reach_platform_db()
    assert shared.job_catalog_uri == shared.resolved_catalog_uri
    apart = load_settings(env={"ICEFLOE_DATABASE_URL": "postgresql://icefloe:pw@db/lake",
                               "ICEFLOE_JOB_DATABASE_URL": "postgresql://jobs:pw2@db/lake"},
                          home=tmp_path)
    assert not apart.jobs_reach_platform_db()
    assert apart.job_catalog_uri.startswith("postgresql+psycopg://jobs:pw2@db/lake?")
    assert apart.job_mlflow_uri.endswith("icefloe_mlflow")
    assert "pw2" not in str(apart.as_dict())
    assert not load_settings(env={}, home=tmp_path).jobs_reach_platform_db()  # SQLite files
