"""docker-compose.yml and Dockerfile: valid against the Compose spec, wired as documented,
and configured only through real STREAMREC_ settings. No Docker engine needed."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from streamrec.stack.servers import AOF_REWRITE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
STREAMREC_SERVICES = ("init", "api", "worker")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
#: Variables that carry secrets: never a default in the file.
SECRETS = ("REDIS_PASSWORD", "STREAMREC_TRACKING_KEYS", "STREAMREC_READ_KEYS",
           "STREAMREC_ADMIN_KEYS")


def load_compose() -> dict[str, Any]:
    yaml = pytest.importorskip("ruamel.yaml")  # comes with check-jsonschema
    return yaml.YAML(typ="safe").load(COMPOSE.read_text())


def interpolate_defaults(value: object) -> str:
    """What Compose would substitute when only the required variables are set: each
    ``${X:-d}`` → d, each required ``${X:?message}`` → ``x-value`` (as an operator would
    set it)."""
    return INTERPOLATION.sub(
        lambda m: f"{m.group(1).lower()}-value" if m.group(2) == "?" else m.group(3) or "",
        str(value))


def _validate_in_process() -> list[str]:
    """Same vendored schema, validated without the CLI (used only if the CLI cannot start)."""
    import jsonschema

    spec = importlib.util.find_spec("check_jsonschema")  # finds, does not import
    assert spec and spec.submodule_search_locations, "check-jsonschema is not installed"
    package = Path(next(iter(spec.submodule_search_locations)))
    schema = json.loads((package / "builtin_schemas/vendor/compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [error.message for error in validator.iter_errors(load_compose())]


def test_compose_file_matches_the_compose_spec() -> None:
    cli = Path(sys.executable).parent / "check-jsonschema"
    assert cli.exists(), f"{cli} missing: pip install -e '.[test]'"
    probe = subprocess.run([str(cli), "--version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        # Some check-jsonschema releases crash at import with some click versions (0.38 with
        # click 8.3); the schema they ship is still the one to validate against.
        warnings.warn(f"check-jsonschema CLI cannot start: {probe.stderr[-300:]}", stacklevel=1)
        assert _validate_in_process() == []
        return
    result = subprocess.run(
        [str(cli), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_streamrec_variable_is_a_settings_field() -> None:
    used = set(re.findall(r"\bSTREAMREC_[A-Z0-9_]+", COMPOSE.read_text()))
    assert used, "compose configures streamrec through STREAMREC_ variables"
    fields = set(Settings.model_fields)
    unknown = sorted(name for name in used if name.removeprefix("STREAMREC_").lower() not in fields)
    assert unknown == [], f"not fields of core.settings.Settings: {unknown}"


@pytest.mark.parametrize("service", STREAMREC_SERVICES)
def test_streamrec_services_are_configured_only_by_settings(service: str) -> None:
    compose = load_compose()
    spec = compose["services"][service]
    environment = spec["environment"]
    assert isinstance(environment, dict)
    assert all(name.startswith("STREAMREC_") for name in environment), environment
    values = {
        name.removeprefix("STREAMREC_").lower(): interpolate_defaults(value)
        for name, value in environment.items()
    }
    settings = Settings.model_validate(values)  # types parse (ints, bools, floats)

    host, _, port = settings.kafka_bootstrap.partition(":")
    assert host in compose["services"] and port
    kafka_env = compose["services"][host]["environment"]
    assert f"//{host}:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    redis_url = re.fullmatch(r"redis://:([^@]+)@(\w+):(\d+)/\d+", settings.redis_url)
    assert redis_url, settings.redis_url
    assert redis_url.group(2) in compose["services"]
    redis_command = " ".join(compose["services"][redis_url.group(2)]["command"])
    assert f"--requirepass {redis_url.group(1)}" in interpolate_defaults(redis_command)
    assert settings.auth_enabled, "the production shape runs with API keys"


def test_services_are_wired_as_documented() -> None:
    services = load_compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["redis"]["image"].startswith("redis:7")
    for infra in ("kafka", "redis"):
        assert services[infra]["healthcheck"]["test"]
    assert services["init"]["command"] == ["streamrec", "topics", "create"]
    assert services["init"]["restart"] == "no"
    assert services["api"]["command"] == ["streamrec", "api"]
    assert services["worker"]["command"] == ["streamrec", "worker"]
    # API replicas behind the proxy, which alone is published, on this machine only
    assert "ports" not in services["api"] and services["api"]["expose"] == ["8000"]
    assert services["proxy"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["api"]["environment"]["STREAMREC_API_HOST"] == "0.0.0.0"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["init"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert services[name]["image"] == services["init"]["image"]
    assert services["init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_workers_and_api_processes_are_scaled_services_behind_the_proxy() -> None:
    """Two workers split the partitions and two API replicas share the load by default;
    the proxy finds every replica by DNS, checks each, and passes the client address,
    which the API trusts (its per-address limits)."""
    compose = load_compose()
    services = compose["services"]
    for name in ("api", "worker"):
        replicas = int(interpolate_defaults(services[name]["deploy"]["replicas"]))
        assert replicas >= 2, name
    partitions = int(compose["x-streamrec-env"]["STREAMREC_TOPIC_PARTITIONS"])
    assert partitions >= int(interpolate_defaults(services["worker"]["deploy"]["replicas"]))
    assert services["proxy"]["configs"][0]["source"] == "haproxy"
    config = compose["configs"]["haproxy"]["content"]
    assert re.search(r"server-template api \d+ api:8000 check .*resolvers docker", config)
    assert "option httpchk GET /healthz" in config
    # The API trusts "*": uvicorn then takes X-Forwarded-For's first entry, so the proxy
    # must replace a client's header, not append to it (option forwardfor appends).
    assert "http-request set-header X-Forwarded-For %[src]" in config
    assert "option forwardfor" not in config
    assert "retry-on conn-failure" in config
    env = services["api"]["environment"]
    settings = Settings.model_validate({k.removeprefix("STREAMREC_").lower():
                                        interpolate_defaults(v) for k, v in env.items()})
    assert settings.api_forwarded_allow_ips == "*"


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    instructions = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    froms = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert froms and all(image == "python:3.11-slim" for image in froms)
    assert "pip install -c constraints.txt ." in text  # pinned, without the embedded extra
    assert "OPENBLAS_NUM_THREADS=1" in text
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert instructions[-1] == 'CMD ["streamrec", "api"]'
    # every package setuptools installs is copied into the build
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    for package in packages:
        assert re.search(rf"^COPY {package} ", text, re.MULTILINE), package


def test_no_secret_has_a_default() -> None:
    """Keys and passwords must be set by the operator: ``${VAR:?message}`` everywhere."""
    text = COMPOSE.read_text()
    uses = [(m.group(1), m.group(2)) for m in INTERPOLATION.finditer(text)]
    for name in SECRETS:
        kinds = {kind for var, kind in uses if var == name}
        assert kinds == {"?"}, f"${{{name}}} must be required (:?), found {kinds or 'no use'}"


def test_kafka_is_the_pinned_version_with_durable_topics() -> None:
    """The compose Kafka is the version the embedded stack and the tests run, and the
    topic settings the `init` service applies keep the log."""
    from streamrec.stack.kafka_broker import pinned_version

    compose = load_compose()
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{pinned_version()}"
    env = compose["services"]["init"]["environment"]
    settings = Settings.model_validate({k.removeprefix("STREAMREC_").lower():
                                        interpolate_defaults(v) for k, v in env.items()})
    assert settings.topic_events_retention_ms == -1
    assert settings.topic_catalog_retention_ms == -1
    kafka_env = compose["services"]["kafka"]["environment"]
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_redis_keeps_its_data_and_never_evicts() -> None:
    command = compose_redis_command()
    assert command["--appendonly"] == "yes"
    assert command["--appendfsync"] in ("everysec", "always")
    # the append-only file rewritten as rarely as the embedded stack's (a fork each time)
    embedded = dict(zip(AOF_REWRITE[::2], AOF_REWRITE[1::2], strict=True))
    assert {k: command[k] for k in embedded} == embedded
    assert command["--maxmemory-policy"] == "noeviction"
    assert re.fullmatch(r"\d+(kb|mb|gb)?", interpolate_defaults(command["--maxmemory"]))


def compose_redis_command() -> dict[str, str]:
    """The redis service's ``--option value`` pairs."""
    args = load_compose()["services"]["redis"]["command"]
    assert args[0] == "redis-server"
    return {args[i]: str(args[i + 1]) for i in range(1, len(args) - 1, 2)}
