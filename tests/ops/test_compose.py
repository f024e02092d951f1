"""docker-compose.yml, the Dockerfile and deploy/nginx.conf: their shape, and that everything
they name -- commands, settings, files, the ASGI application, health paths -- exists here.

Docker itself is not needed: the files are parsed, and what they refer to is looked up in the
project (management commands, environment variables read by settings, importable modules).
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
APPS = ("app1", "app2")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def env_names_read_by_the_project() -> set[str]:
    """Every environment variable that settings.py (and the server entry point) reads."""
    names: set[str] = set()
    for path in (ROOT / "messenger" / "settings.py", ROOT / "runtime" / "serve.py"):
        source = path.read_text()
        names |= set(re.findall(r"os\.environ(?:\.get)?[\(\[]\s*\"(\w+)\"", source))
        names |= set(re.findall(r"env_(?:bool|int|list)\(\s*\"(\w+)\"", source))
    return names


def resolved(value: str) -> str:
    """Compose interpolation with the defaults, as when nothing is set in the shell or .env."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def healthcheck_url(service: dict) -> str:
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"https?://[^'\" ]+", test)
    assert match, test
    return match.group(0)


def nginx_conf() -> str:
    [volume] = [v for v in SERVICES["nginx"]["volumes"] if "nginx.conf" in v]
    source, target, *_ = volume.split(":")
    assert target == "/etc/nginx/nginx.conf"
    path = ROOT / source
    assert path.is_file(), source
    return path.read_text()


def block(text: str, opening: str) -> str:
    """The body of the first ``<opening> { ... }`` block (braces balanced)."""
    start = text.index(opening)
    depth, index = 0, text.index("{", start)
    for position in range(index, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[index + 1 : position]
    raise AssertionError(f"unbalanced block {opening}")


# --- services and their wiring ------------------------------------------------------------------


def test_services():
    assert set(SERVICES) == {
        "postgres", "redis", "minio", "createbucket", "migrate", "purge", *APPS, "nginx", "rabbitmq", "worker",
    }  # fmt: skip
    assert SERVICES["nginx"]["image"].startswith("nginx:1.27-alpine")


@pytest.mark.parametrize("name", ["postgres", "redis", "minio", "rabbitmq"])
def test_backing_services_keep_data_in_named_volumes_and_have_healthchecks(name):
    service = SERVICES[name]
    assert service["healthcheck"]["test"]
    for volume in service["volumes"]:
        assert volume.split(":")[0] in COMPOSE["volumes"]


def test_migrate_runs_once_after_the_database_is_healthy_and_its_commands_exist():
    migrate = SERVICES["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    commands = re.findall(r"manage\.py\s+(\w+)", " ".join(migrate["command"]))
    assert "migrate" in commands
    assert set(commands) <= set(get_commands()), set(commands) - set(get_commands())


def test_two_identical_app_replicas_after_migrate_and_healthy_backends():
    first, second = (SERVICES[name] for name in APPS)
    assert first == second
    assert first["image"] == SERVICES["migrate"]["image"] and first["build"] == SERVICES["migrate"]["build"]
    assert first["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert first["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert first["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in first, "replicas are reached through nginx only"


def test_workers_run_the_outbox_worker_in_two_replicas_after_migrate_on_a_healthy_broker():
    """The worker service: the image, the app's settings plus its own, run_worker, two replicas,
    started after migrations with RabbitMQ healthy, checked on its metrics port."""
    worker = SERVICES["worker"]
    assert worker["image"] == SERVICES["app1"]["image"] and worker["build"] == SERVICES["app1"]["build"]
    assert re.findall(r"manage\.py\s+(\w+)", " ".join(worker["command"])) == ["run_worker"]
    assert "run_worker" in get_commands()
    assert worker["deploy"]["replicas"] == 2
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    environment = worker["environment"]
    assert {k: v for k, v in environment.items() if k in SERVICES["app1"]["environment"]} == SERVICES["app1"][
        "environment"
    ]
    port = environment["WORKER_METRICS_PORT"]
    assert f"127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"]) and port in worker["expose"]
    assert set(environment) <= env_names_read_by_the_project(), set(environment) - env_names_read_by_the_project()
    assert "ports" not in worker


def test_the_apps_and_workers_share_one_broker_the_apps_do_not_wait_for():
    """The replicas record events in the database only: a RabbitMQ outage never blocks a write."""
    url = SERVICES["app1"]["environment"]["BROKER_URL"]
    assert url.startswith("amqp://") and "@rabbitmq:5672/" in url
    user, password = url.removeprefix("amqp://").split("@")[0].split(":")
    rabbit = SERVICES["rabbitmq"]["environment"]
    assert (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"]) == (user, password)
    assert "guest" not in url  # RabbitMQ lets "guest" in from its own host only
    assert "rabbitmq" not in SERVICES["app1"]["depends_on"]
    assert SERVICES["worker"]["environment"]["BROKER_URL"] == url


def test_every_service_healthy_condition_points_at_a_service_with_a_healthcheck():
    for name, service in SERVICES.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in SERVICES, (name, target)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], (name, target)


def test_nginx_waits_for_healthy_replicas_and_publishes_port_8000():
    nginx = SERVICES["nginx"]
    assert {name: nginx["depends_on"][name]["condition"] for name in APPS} == dict.fromkeys(APPS, "service_healthy")
    assert any(str(port).split(":")[-2:] == ["8000", "8000"] for port in nginx["ports"])
    assert "listen 8000;" in nginx_conf()


@pytest.mark.django_db
def test_health_paths_used_by_compose_and_the_image_exist():
    """The replicas' healthcheck is readiness (/readyz); the image's own is liveness (/healthz)."""
    app_url = healthcheck_url(SERVICES["app1"])
    assert app_url.endswith("/readyz") and ":8000/" in app_url
    image_check = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", DOCKERFILE, re.MULTILINE | re.DOTALL)
    assert image_check and "http://127.0.0.1:8000/healthz" in image_check.group(1)
    assert healthcheck_url(SERVICES["nginx"]).endswith(":8000/healthz")
    client = Client()
    for path in ("/readyz", "/healthz"):
        assert client.get(path, HTTP_HOST="127.0.0.1:8000").status_code == 200, path


# --- settings it names --------------------------------------------------------------------------------


def test_every_app_environment_variable_is_read_by_settings():
    read = env_names_read_by_the_project()
    environment = SERVICES["app1"]["environment"]
    assert set(environment) <= read, set(environment) - read
    interpolated = set(_INTERPOLATION.findall(yaml.safe_dump(COMPOSE)))
    assert {name for name, _ in interpolated} <= read


def test_allowed_hosts_include_what_clients_and_scrapers_use():
    hosts = SERVICES["app1"]["environment"]["ALLOWED_HOSTS"].split(",")
    assert "localhost" in hosts  # browsers on http://localhost:8000 through nginx (Host: $http_host)
    assert set(APPS) <= set(hosts)


def test_the_replicas_trust_exactly_the_nginx_address():
    """X-Forwarded-For is believed from nginx only: its fixed address on the compose network."""
    trusted = SERVICES["app1"]["environment"]["TRUSTED_PROXIES"].split(",")
    nginx_address = SERVICES["nginx"]["networks"]["default"]["ipv4_address"]
    assert trusted == [nginx_address]
    [subnet] = [entry["subnet"] for entry in COMPOSE["networks"]["default"]["ipam"]["config"]]
    assert ipaddress.ip_address(nginx_address) in ipaddress.ip_network(subnet)
    origins = SERVICES["app1"]["environment"]["CSRF_TRUSTED_ORIGINS"].split(",")
    assert "http://localhost:8000" in origins


def test_the_app_environment_loads_settings_and_passes_system_checks():
    """The replicas' exact environment (compose defaults) starts Django: production mode,
    structured logs, nothing missing."""
    env = {key: value for key, value in os.environ.items() if key not in ("TEST_DATABASE_NAME", "REQUIRE_SERVICES")}
    env.update({key: resolved(str(value)) for key, value in SERVICES["app1"]["environment"].items()})
    env["DJANGO_SETTINGS_MODULE"] = "messenger.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG, settings.LOG_FORMAT)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert probe.stdout.split() == ["False", "json"]


# --- the image -----------------------------------------------------------------------------------------


def dockerfile_cmd() -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.MULTILINE)
    assert match
    return json.loads(match.group(1))


def test_dockerfile_is_slim_multi_stage_non_root_and_collects_static():
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert stages[-1] == "python:3.11-slim" and len(stages) >= 2
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "manage.py collectstatic" in DOCKERFILE
    assert not (ROOT / ".dockerignore").read_text().count("\nwebclient")


def test_the_image_command_serves_the_asgi_application_with_the_frame_cap():
    command = dockerfile_cmd()
    assert command[command.index("--websocket-max-message-size") + 1] == "65536"
    assert command[command.index("-b") + 1] == "0.0.0.0" and command[command.index("-p") + 1] == "8000"
    if "-m" in command:
        module = importlib.import_module(command[command.index("-m") + 1])
        target = getattr(module, "APPLICATION", None) or next(arg for arg in command if ":" in arg)
    else:
        target = next(arg for arg in command if re.fullmatch(r"[\w.]+:\w+", arg))
    module_name, attribute = target.split(":")
    assert callable(getattr(importlib.import_module(module_name), attribute))


def test_run_sh_starts_the_same_server_as_the_image():
    run_sh = (ROOT / "run.sh").read_text()
    command = dockerfile_cmd()
    entry = " ".join(command[: command.index("-b")])
    assert entry in run_sh, entry
    assert "--websocket-max-message-size 65536" in run_sh


def test_files_the_build_and_mounts_name_exist():
    for service in SERVICES.values():
        if "build" in service:
            context = ROOT / (service["build"] if isinstance(service["build"], str) else service["build"]["context"])
            assert (context / "Dockerfile").is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), source
    for copied in re.findall(r"^COPY (?!--from)(\S+) ", DOCKERFILE, re.MULTILINE):
        assert (ROOT / copied).exists(), copied


# --- the image context (.dockerignore) -------------------------------------------------------------------

# What must never reach the image (development tools, docs pictures, local data and caches) ...
NOT_IN_IMAGE = [
    "tests/ops/test_compose.py", "tests/conftest.py", "bench/__main__.py", "bench/results/s1/report.json",
    "devtools/__init__.py", "devtools/loadgen/loader.py", "docs/screenshots/desktop.png",
    ".data/postgres/PG_VERSION", "results/run-1.json", "db.sqlite3", "live.sqlite3", "chats/leftover.sqlite3",
    ".venv/bin/python", ".pytest_cache/v/cache/lastfailed", ".ruff_cache/CACHEDIR.TAG", ".hypothesis/examples/x",
    "chats/__pycache__/models.cpython-311.pyc", ".git/HEAD", ".env", "debug.log",
]  # fmt: skip
# ... and the product it must hold.
IN_IMAGE = [
    "manage.py", "requirements.txt", "messenger/settings.py", "messenger/serve.py", "accounts/models.py",
    "chats/models.py", "chats/management/commands/seed_data.py", "webclient/views.py", ".env.example",
]  # fmt: skip


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it (Go's filepath.Match plus ``**``), anchored at the context root."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


@cache
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) per line of .dockerignore, in order; later lines override earlier ones."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((excludes, _pattern_regex(pattern)))
    return rules


def excluded_from_image(path: str) -> bool:
    """Whether ``docker build`` leaves ``path`` (relative to the context) out: a rule matches it or a parent."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for excludes, regex in dockerignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = excludes
    return excluded


def image_context() -> list[str]:
    """The files of this tree that ``docker build .`` sends, relative to the root."""
    files = []
    for directory, subdirs, names in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        # No negated rule reaches into an excluded directory here, so it need not be walked.
        subdirs[:] = [name for name in subdirs if not excluded_from_image(prefix + name)]
        files += [prefix + name for name in names if not excluded_from_image(prefix + name)]
    return files


def test_the_dockerignore_matcher_reads_rules_as_docker_does():
    assert _pattern_regex("**/*.pyc").fullmatch("a.pyc") and _pattern_regex("**/*.pyc").fullmatch("a/b/c.pyc")
    assert _pattern_regex("*.log").fullmatch("x.log") and not _pattern_regex("*.log").fullmatch("a/x.log")
    assert _pattern_regex("docs/screenshots").fullmatch("docs/screenshots")
    assert not _pattern_regex("docs/screenshots").fullmatch("docs/PROTOCOL.md")
    assert excluded_from_image(".env.production") and not excluded_from_image(".env.example")  # "!" re-includes


@pytest.mark.parametrize("path", NOT_IN_IMAGE)
def test_the_image_context_leaves_out_development_files_and_local_data(path):
    assert excluded_from_image(path), f"{path} would be copied into the image: add it to .dockerignore"


@pytest.mark.parametrize("path", IN_IMAGE)
def test_the_image_context_keeps_the_product(path):
    assert not excluded_from_image(path), f"{path} is needed in the image but .dockerignore leaves it out"


def test_the_image_context_of_this_tree_is_the_product():
    """Walking the real tree as the build does: no test, benchmark, loader or screenshot is sent, and every
    source file of the apps is."""
    context = image_context()
    development = ("tests/", "bench/", "devtools/", "docs/screenshots/", ".venv/", ".data/")
    assert not [path for path in context if path.startswith(development)]
    assert not [path for path in context if path.endswith((".sqlite3", ".pyc"))]
    for app in ("accounts", "chats", "messenger", "webclient", "outbox"):
        sources = [p.relative_to(ROOT).as_posix() for p in (ROOT / app).rglob("*.py") if "__pycache__" not in p.parts]
        assert sources and set(sources) <= set(context), app
    # The product never imports the development packages at module level (seed_data imports the
    # loader inside a function, after asking whether the devtools app is installed).
    top_level_import = re.compile(r"^(?:from|import) (?:devtools|bench|tests)\b", re.MULTILINE)
    assert not [path for path in context if path.endswith(".py") and top_level_import.search((ROOT / path).read_text())]


def test_the_image_context_starts_without_the_development_tools(tmp_path):
    """A copy of just the image context, in the replicas' environment: Django starts and passes its checks,
    devtools is not installed, seed_data's bulk options say the loader is a development tool."""
    for path in image_context():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, tmp_path / path)
    env = {key: value for key, value in os.environ.items() if key not in ("TEST_DATABASE_NAME", "REQUIRE_SERVICES")}
    env.update({key: resolved(str(value)) for key, value in SERVICES["app1"]["environment"].items()})
    env.update(DJANGO_SETTINGS_MODULE="messenger.settings", PYTHONPATH="", PYTHONDONTWRITEBYTECODE="1")

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    check = manage("check")
    assert check.returncode == 0, check.stderr
    probe = manage("shell", "-c", "from django.apps import apps; print(apps.is_installed('devtools'))")
    assert probe.stdout.splitlines()[-1:] == ["False"], probe.stdout + probe.stderr
    load = manage("seed_data", "--users", "2", "--chats", "1", "--messages", "1")
    assert load.returncode != 0 and "CommandError" in load.stderr and "development tool" in load.stderr, load.stderr
    for option in ("--users", "--big-chat-messages"):
        assert option in manage("seed_data", "--help").stdout  # the options are still offered


def test_the_development_tools_are_installed_in_a_checkout():
    from django.apps import apps

    import devtools

    assert apps.is_installed("devtools") and Path(devtools.__file__).parent == ROOT / "devtools"


# --- nginx ----------------------------------------------------------------------------------------------


def test_nginx_balances_over_both_replicas():
    upstream = block(nginx_conf(), "upstream messenger_app")
    servers = re.findall(r"^\s*server\s+(\S+?):(\d+)", upstream, re.MULTILINE)
    assert sorted(host for host, _ in servers) == sorted(APPS)
    assert {port for _, port in servers} == {"8000"}
    assert "keepalive" in upstream


def test_nginx_routes_websocket_upgrades_with_long_timeouts():
    conf = nginx_conf()
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{[^}]*default upgrade;", conf)
    server = block(conf, "server {")
    assert "proxy_set_header Upgrade $http_upgrade;" in server
    assert "proxy_set_header Connection $connection_upgrade;" in server
    assert "proxy_http_version 1.1;" in server
    ws = block(server, "location /ws/")
    assert "proxy_pass http://messenger_app;" in ws
    timeout = re.search(r"proxy_read_timeout (\d+)s;", ws)
    assert timeout and int(timeout.group(1)) >= 600


def test_nginx_forwards_client_headers_and_request_id_and_keeps_metrics_inside():
    server = block(nginx_conf(), "server {")
    for header in (
        "Host $forwarded_host",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "X-Forwarded-Proto $scheme",
        "X-Request-ID $req_id",
    ):
        assert f"proxy_set_header {header};" in server, header
    assert "return 404;" in block(server, "location = /metrics")
    # The Host with its port (Django's CSRF origin check compares it with the browser's Origin).
    assert re.search(r"map \$http_host \$forwarded_host \{\s*default \$http_host;", nginx_conf())
    assert "proxy_pass http://messenger_app;" in block(server, "location / ")


def test_nginx_locations_inherit_the_proxy_headers():
    """A location with any proxy_set_header of its own loses every server-level one (Host,
    X-Forwarded-*, Upgrade...): the headers are set once, at server level."""
    server = block(nginx_conf(), "server {")
    for opening in ("location /ws/", "location / ", "location /messenger-attachments/", "location /api/uploads"):
        assert "proxy_set_header" not in block(server, opening), opening


def test_attachments_go_to_minio_and_presigned_urls_come_back_through_nginx():
    """The replicas store in MinIO, sign URLs for the address browsers use (nginx), and nginx
    proxies the bucket's path to MinIO with the Host unchanged (the signature covers it)."""
    env = SERVICES["app1"]["environment"]
    assert env["ATTACHMENTS_STORAGE"] == "s3" and env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert resolved(env["AWS_S3_PUBLIC_ENDPOINT_URL"]) == "http://localhost:8000"
    bucket = env["AWS_STORAGE_BUCKET_NAME"]
    assert bucket in " ".join(SERVICES["createbucket"]["command"])
    assert SERVICES["app1"]["depends_on"]["createbucket"]["condition"] == "service_completed_successfully"
    server = block(nginx_conf(), "server {")
    assert "proxy_pass http://attachments_store;" in block(server, f"location /{bucket}/")
    assert "server minio:9000;" in block(nginx_conf(), "upstream attachments_store")
    assert "proxy_request_buffering off;" in block(server, "location /api/uploads")
    assert "client_max_body_size 51m;" in nginx_conf()
    commands = re.findall(r"manage\.py\s+(\w+)", " ".join(SERVICES["purge"]["command"]))
    assert commands == ["purge_uploads", "purge_command_keys", "clearsessions"] and set(commands) <= set(get_commands())


def test_nginx_access_log_has_no_query_string():
    conf = nginx_conf()
    log_format = conf[conf.index("log_format") : conf.index("access_log")]
    assert "$uri" in log_format and "$request_uri" not in log_format and "$args" not in log_format
    assert "$request " not in log_format and '$request"' not in log_format


def test_env_example_documents_every_variable_the_project_reads():
    """STYLE.md: .env.example documents every variable (settings.py and the server entry point)."""
    documented = (ROOT / ".env.example").read_text()
    missing = sorted(name for name in env_names_read_by_the_project() if not re.search(rf"\b{name}=", documented))
    assert missing == []
