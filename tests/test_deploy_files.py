"""No Docker engine runs here: check the deployment files for their essentials."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_has_bot_and_healthy_postgres() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    db, bot = services["db"], services["bot"]
    assert db["image"].startswith("postgres")
    assert "healthcheck" in db and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    assert bot["env_file"] == ".env"
    assert bot["restart"] in ("unless-stopped", "always")
    assert bot["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@db:5432/" in bot["environment"]["DATABASE_URL"]
    assert any(v.endswith(":/app/data") for v in bot["volumes"])
    assert set(compose["volumes"]) >= {"db-data", "bot-data"}


def test_dockerfile_is_multistage_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+", text, flags=re.M)
    assert len(stages) >= 2
    final = text.split("\nFROM ")[-1]
    user = re.findall(r"^USER\s+(\S+)", final, flags=re.M)
    assert user and not user[-1].startswith(("root", "0"))
    assert "gcc" not in final and "build-essential" not in final
    assert "COPY --from=build" in final


def test_env_example_documents_every_setting() -> None:
    from bot.settings import Settings

    text = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        if name == "provider_base_urls":
            assert "PROVIDER_" in text
            continue
        assert name.upper() in text, f"{name.upper()} missing from .env.example"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            assert ver, f"constraints.txt: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = ver
    return pins


def test_installs_use_the_constraints_file_and_it_pins_every_dependency() -> None:
    """Reproducible installs (issue 17 item 0): README's commands, CI and the image all install
    through constraints.txt, and it pins every direct dependency of the package and its tests."""
    import tomllib

    pins = _pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    for spec in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=~!; ]", spec, maxsplit=1)[0]).lower()
        assert name in pins, f"{name} is not pinned in constraints.txt"
    readme = (ROOT / "README.md").read_text()
    installs = re.findall(r"^python3 -m venv .*pip install.*$", readme, flags=re.M)
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()
    docker = (ROOT / "Dockerfile").read_text()
    assert "COPY" in docker and "constraints.txt" in docker
    assert "pip install -c constraints.txt" in docker
