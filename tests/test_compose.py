"""docker-compose.yml, Dockerfile and .env.example, checked statically (Docker cannot run here).

Every command a container runs must be a CLI invocation this package parses; every ``${VAR}`` must be
documented in .env.example; no secret may be written into the files; every published port must be
bound to the loopback interface (the dashboard has no authentication, the database has a password
that travels in clear over a plain connection).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_rnn_names.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
OUR_IMAGE = "ml-rnn-names"
#: what each of our services must run
EXPECTED_COMMANDS = {"worker": "run", "finalize": "finalize", "report": "report", "dashboard": "dashboard"}
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|PASSPHRASE|_KEY$", re.IGNORECASE)
_VAR = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def env_example() -> dict[str, str]:
    """``NAME=value`` lines of .env.example (comments and blank lines skipped)."""
    out = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def variables(text: str) -> set[str]:
    """Names of the variables compose interpolates in ``text`` (``$$`` is a literal ``$``)."""
    text = text.replace("$$", "")
    return {m.group("name") or m.group("bare") for m in _VAR.finditer(text)}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?error}``, ``$$``."""

    def substitute(m: re.Match[str]) -> str:
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        if op in (":-", "-"):
            return current if current or (op == "-" and current is not None) else arg
        if op in (":+", "+"):
            return arg if current or (op == "+" and current is not None) else ""
        if op in (":?", "?"):
            if not current and not (op == "?" and current is not None):
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return str(current)
        return current or ""

    return _VAR.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def our_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in spec["services"].items()
        if "build" in svc or str(svc.get("image", "")).split(":")[0] == OUR_IMAGE
    }


def argv(service: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The arguments after ``ml-rnn-names`` that a service of our image runs, interpolated."""
    entrypoint = service.get("entrypoint", ["ml-rnn-names"])
    entrypoint = entrypoint.split() if isinstance(entrypoint, str) else list(entrypoint)
    command = service.get("command", [])
    command = command.split() if isinstance(command, str) else list(command)
    full = [interpolate(str(part), env) for part in entrypoint + command]
    assert full[0] == "ml-rnn-names", f"expected the ml-rnn-names CLI, got {full}"
    return full[1:]


@pytest.fixture
def example_env() -> dict[str, str]:
    """.env.example's values, with the one that must be filled in, filled in."""
    env = env_example()
    env["POSTGRES_PASSWORD"] = "x" * 24
    return env


def test_services_are_all_there() -> None:
    services = compose()["services"]
    assert {"postgres", "worker", "finalize", "dashboard"} <= set(services)
    assert set(EXPECTED_COMMANDS) <= set(our_services(compose()))


def test_every_command_is_a_cli_invocation_that_parses(example_env: dict[str, str]) -> None:
    parser = build_parser()
    for name, service in our_services(compose()).items():
        args = argv(service, example_env)
        parsed = parser.parse_args(args)  # SystemExit (a failure here) if it does not parse
        if name in EXPECTED_COMMANDS:
            assert parsed.command == EXPECTED_COMMANDS[name], (name, args)
        campaign = ROOT / parsed.campaign
        assert campaign.is_file(), (
            f"{name}: {parsed.campaign} is not in the repository (the image copies studies/)"
        )
        assert parsed.storage is None, f"{name}: the storage URL goes through ML_RNN_NAMES_STORAGE, not argv"


def test_worker_runs_one_process_per_replica_with_replicas_from_the_environment(
    example_env: dict[str, str],
) -> None:
    worker = compose()["services"]["worker"]
    assert worker["deploy"]["replicas"] == "${WORKERS:-2}"
    parsed = build_parser().parse_args(argv(worker, example_env))
    assert parsed.workers == 1
    assert parsed.overrides == ["execution.threads_per_worker=1"]
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dashboard_binds_everywhere_inside_but_publishes_on_loopback(example_env: dict[str, str]) -> None:
    dashboard = compose()["services"]["dashboard"]
    parsed = build_parser().parse_args(argv(dashboard, example_env))
    assert (parsed.host, parsed.port) == ("0.0.0.0", 8080)
    assert dashboard["ports"] == ["127.0.0.1:${DASHBOARD_PORT:-8080}:8080"]


def test_finalize_is_a_one_shot_profile() -> None:
    services = compose()["services"]
    for name in ("finalize", "report"):
        assert services[name]["profiles"] == ["finalize"]
        assert services[name]["restart"] == "no"
    assert services["report"]["depends_on"]["finalize"]["condition"] == "service_completed_successfully"


def test_postgres_has_a_healthcheck_a_named_volume_and_no_written_credentials() -> None:
    spec = compose()
    postgres = spec["services"]["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in spec["volumes"], "the database lives in a named volume"
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_storage_url_reaches_containers_through_the_environment(example_env: dict[str, str]) -> None:
    for name, service in our_services(compose()).items():
        url = service["environment"]["ML_RNN_NAMES_STORAGE"]
        assert url.startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in interpolate(url, example_env)


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in _walk(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [item for i, value in enumerate(node) for item in _walk(value, f"{path}[{i}]")]
    return [(path, node)]


def test_no_literal_secrets() -> None:
    for path, value in _walk(compose()):
        text = str(value)
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEY.search(key):
            assert re.fullmatch(r"\$\{[A-Z_]+(:?[?-][^}]*)?\}", text), f"{path}: a literal secret ({key})"
        for match in re.finditer(r"://([^:/@\s]+):([^@\s]+)@", text):  # user:password@ in a URL
            assert match.group(2).startswith("${"), f"{path}: a literal password in a URL"
    assert env_example()["POSTGRES_PASSWORD"] == "", ".env.example must not suggest a password"
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"(?im)^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)", dockerfile)


def test_env_file_is_ignored_and_not_committed() -> None:
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in [line.strip() for line in gitignore]
    dockerignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in [line.strip() for line in dockerignore], "the image must never contain .env"
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "--", ".env"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert tracked.strip() == ""


def test_every_variable_is_documented_in_env_example() -> None:
    used = variables(COMPOSE.read_text(encoding="utf-8"))
    documented = set(env_example())
    assert used - documented == set(), f"document these in .env.example: {sorted(used - documented)}"
    # and .env.example documents nothing that does not exist
    assert documented - used == set(), f"unused in docker-compose.yml: {sorted(documented - used)}"


def test_published_ports_are_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert text.startswith("127.0.0.1:"), f"{name} publishes {port!r} beyond this host"
        assert service.get("network_mode") != "host", name


def test_dockerfile_installs_pinned_cpu_torch_then_the_package() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"(?m)^FROM python:3\.11-slim\s*$", text)
    torch = re.search(r"download\.pytorch\.org/whl/cpu \"torch==\$\{TORCH_VERSION\}\"", text)
    assert torch, "torch from the CPU index, pinned through TORCH_VERSION"
    package = text.index('pip install ".[postgres]"')
    assert torch.start() < package, "torch must be installed before the package"
    pin = re.search(r"(?m)^ARG TORCH_VERSION=(\S+)$", text)
    makefile_pin = re.search(r"(?m)^TORCH\s*\?=\s*torch==(\S+)$", (ROOT / "Makefile").read_text())
    assert pin and makefile_pin and pin.group(1) == makefile_pin.group(1) == env_example()["TORCH_VERSION"]
    assert 'ENTRYPOINT ["ml-rnn-names"]' in text
    assert re.search(r"(?m)^USER app$", text), "the app does not run as root"


def test_interpolation_helper() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("${A}-${B:-two}-${EMPTY:-three}-${EMPTY-four}-$$A", env) == "1-two-three--$A"
    assert interpolate("${A:+set}${B:+unset}", env) == "set"
    with pytest.raises(AssertionError, match="required"):
        interpolate("${MISSING:?set it}", env)
    assert variables("${A:-x} $B $$C ${D:?e}") == {"A", "B", "D"}
