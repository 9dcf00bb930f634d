"""The deployment kit in ``deploy/`` and its runbook in docs/deploy.md, checked against the code.

The unit is checked with ``systemd-analyze verify`` and its offline security score, the nginx
site with ``nginx -t`` when nginx is installed (and parsed in any case), both Litestream
configurations with ``litestream databases``; the environment template must name every
setting the code reads, with the code's defaults, and the runbook every alert the code raises.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from deploy_checks import ROOT, alert_codes, environment_variables

from otc_bridge.config import Config, ConfigError
from otc_bridge.serving import replication

DEPLOY = ROOT / "deploy"
ENV_TEMPLATE = DEPLOY / "otc-bridge.env"
UNIT = DEPLOY / "systemd" / "otc-bridge.service"
NGINX_SITE = DEPLOY / "nginx" / "otc-bridge.conf"
LITESTREAM_CONFIGS = sorted((DEPLOY / "litestream").glob("*.yml"))
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
_LINE = re.compile(r"^(#)?([A-Z][A-Z0-9_]*)=(.*)$")
#: Enough of a quote chain for its settings to be read (the defaults check).
_CHAIN = {"OTC_EVM_RPC_URL": "http://127.0.0.1:8545", "OTC_EVM_CHAIN_ID": "31337",
          "OTC_HTLC_ADDRESS": "0x" + "11" * 20}


def template() -> dict[str, tuple[bool, str]]:
    """``{name: (commented, value)}`` of every variable line of the environment template."""
    found = {}
    for line in ENV_TEMPLATE.read_text(encoding="utf-8").splitlines():
        match = _LINE.match(line.strip())
        if match:
            assert match.group(2) not in found, f"{match.group(2)} listed twice"
            found[match.group(2)] = (bool(match.group(1)), match.group(3))
    return found


# --- the environment template ---------------------------------------------------------------------

def test_the_scan_finds_settings_of_every_kind():
    names = environment_variables()
    assert {"RUSTCHAIN_NODE", "RC_ADMIN_KEY", "OTC_DB_PATH", "OTC_HEADER_TIMEOUT_SECONDS", "OTC_OPERATOR",
            "OTC_LITESTREAM_CONFIG", "OTC_REPLICA_DIR", "PROMETHEUS_MULTIPROC_DIR"} <= names


def test_every_setting_the_code_reads_is_in_the_environment_template():
    missing = sorted(environment_variables() - set(template()))
    assert not missing, f"add to deploy/otc-bridge.env (with the default): {missing}"


def test_every_variable_the_litestream_configurations_expand_is_in_the_template():
    for config in LITESTREAM_CONFIGS:
        text = re.sub(r"(?m)#.*$", "", config.read_text(encoding="utf-8"))
        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", text))
        assert used and used <= set(template()), (config.name, sorted(used - set(template())))


def test_the_commented_defaults_are_the_codes_defaults():
    base = {"RUSTCHAIN_NODE": "https://node.example.net"}
    try:
        Config.from_env({**base, **_CHAIN})
        base.update(_CHAIN)
    except ConfigError:  # no quote chain in this code, or it needs more: check without one
        pass
    reference = Config.from_env(base)
    checked = 0
    for name, (commented, value) in template().items():
        if commented and value and name not in base:
            assert Config.from_env({**base, name: value}) == reference, f"{name}={value} is not the default"
            checked += 1
    assert checked >= 40


def test_the_production_values_of_the_template_are_valid():
    active = {name: value for name, (commented, value) in template().items() if not commented}
    cfg = Config.from_env(active)
    assert cfg.db_path == "/var/lib/otc-bridge/bridge.db"
    assert [str(net) for net in cfg.trusted_proxies] == ["127.0.0.1/32", "::1/128"]
    assert active["OTC_LITESTREAM_CONFIG"] == "/etc/otc-bridge/litestream.yml"


# --- systemd --------------------------------------------------------------------------------------

def rendered_unit(directory: Path) -> Path:
    """The unit with ExecStart pointing at this machine's otc-bridge (verify checks it exists)."""
    binary = shutil.which("otc-bridge")
    assert binary, "otc-bridge is not installed (pip install -e .)"
    path = directory / "otc-bridge.service"
    path.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/otc-bridge/venv/bin/otc-bridge", binary))
    return path


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            assert line in ("[Unit]", "[Service]", "[Install]"), line
            section = line
            continue
        key, sep, value = line.partition("=")
        assert sep and section, line
        settings.setdefault(f"{section}{key}", []).append(value)
    return settings


def test_the_unit_runs_serve_replicate_hardened():
    settings = unit_settings()
    assert "serve --replicate" in settings["[Service]ExecStart"][0]
    assert settings["[Service]EnvironmentFile"] == ["/etc/otc-bridge/otc-bridge.env"]
    assert settings["[Service]Restart"] == ["on-failure"]
    assert settings["[Service]KillMode"] == ["mixed"]  # the master stops its workers, then Litestream
    assert settings["[Service]StateDirectoryMode"] == ["0700"] and settings["[Service]UMask"] == ["0077"]
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID"):
        assert settings[f"[Service]{hardening}"] == ["yes"], hardening
    assert settings["[Service]ProtectSystem"] == ["strict"]
    env_dir = settings["[Service]RuntimeDirectory"][0].split()
    assert "otc-bridge/metrics" in env_dir
    assert template()["PROMETHEUS_MULTIPROC_DIR"] == (False, "/run/otc-bridge/metrics")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit_and_rates_it_ok(tmp_path):
    unit = rendered_unit(tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          check=False)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    score = re.search(r"Overall exposure level for otc-bridge\.service: ([0-9.]+)", done.stdout)
    assert score, done.stdout[-2000:] + done.stderr
    assert float(score.group(1)) <= 2.0, done.stdout[-3000:]


# --- nginx ----------------------------------------------------------------------------------------

def nginx_blocks(text: str) -> dict[str, str]:
    """``{block head: its text}`` for every ``head { ... }`` block (nested ones too); asserts the
    braces balance and every directive ends with ``;``."""
    text = re.sub(r"#[^\n]*", "", text)
    blocks, stack, start = {}, [], 0
    for index, char in enumerate(text):
        if char == "{":
            head = text[start:index].strip().split(";")[-1].strip()
            stack.append((head, index))
            start = index + 1
        elif char == "}":
            assert stack, "unbalanced }"
            head, opened = stack.pop()
            body = text[opened + 1:index]
            assert not re.search(r"[^;{}\s]\s*$", body.strip() + " "), f"{head}: a directive lacks ';'"
            blocks[head if head not in blocks else f"{head}#{index}"] = body
            start = index + 1
        elif char == ";":
            start = index + 1
    assert not stack, "unbalanced {"
    return blocks


def directive(body: str, name: str) -> list[str]:
    return re.findall(rf"(?m)^\s*{re.escape(name)}\s+([^;]*);", body)


def test_the_nginx_site_matches_the_bridges_bounds():
    blocks = nginx_blocks(NGINX_SITE.read_text(encoding="utf-8"))
    cfg = Config()
    tls = next(body for head, body in blocks.items() if head.startswith("server") and "443 ssl" in body)
    assert directive(tls, "ssl_certificate") and directive(tls, "ssl_certificate_key")
    assert directive(tls, "client_max_body_size") == [f"{cfg.max_body_bytes // 1024}k"]
    assert directive(tls, "client_header_timeout") == [f"{cfg.header_timeout_seconds:g}s"]
    assert directive(tls, "client_body_timeout") == [f"{cfg.body_timeout_seconds:g}s"]
    assert float(directive(tls, "proxy_read_timeout")[0].rstrip("s")) > cfg.handler_timeout_seconds
    headers = directive(tls, "proxy_set_header")
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in headers and "X-Real-IP $remote_addr" in headers
    upstream = blocks["upstream otc_bridge"]
    assert directive(upstream, "server") == [f"{cfg.host}:{cfg.port}"]
    assert float(directive(upstream, "keepalive_timeout")[0].rstrip("s")) < cfg.keepalive_seconds
    stream = blocks["location = /api/stream"]
    assert directive(stream, "proxy_buffering") == ["off"] and directive(stream, "proxy_pass")
    # nginx reaches the bridge from loopback, which the template makes a trusted proxy.
    assert "127.0.0.1/32" in template()["OTC_TRUSTED_PROXIES"][1]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_nginx_accepts_the_site(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=otc.example.com"], check=True, capture_output=True,
                   timeout=60)
    site = NGINX_SITE.read_text(encoding="utf-8")
    site = site.replace("/etc/letsencrypt/live/otc.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/otc.example.com/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(f"    {kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {tmp_path}/site.conf;\n}}\n")
    done = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr


# --- Litestream -----------------------------------------------------------------------------------

@pytest.mark.parametrize("config", LITESTREAM_CONFIGS, ids=lambda p: p.name)
def test_litestream_reads_the_shipped_configuration(config, litestream_bin, tmp_path):
    parsed = yaml.safe_load(config.read_text(encoding="utf-8"))
    (db,) = parsed["dbs"]
    assert db["path"] == "${OTC_DB_PATH}"
    assert all(replica["sync-interval"] == replication.SYNC_INTERVAL for replica in db["replicas"])
    env = {name: value for name, (_, value) in template().items()}
    env.update(OTC_REPLICA_DIR=str(tmp_path / "replica"), OTC_DB_PATH=str(tmp_path / "bridge.db"))
    listed = replication.configured_databases(litestream_bin, config, env)
    assert listed == {str(tmp_path / "bridge.db")}


# --- the documentation ----------------------------------------------------------------------------

def runbook() -> str:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    return text[text.index("## Runbook"):]


def test_the_scan_finds_alerts_of_every_kind():
    assert {"outbox_dead", "worker_coverage_breach", "payout_unknown", "escrow_tampered", "reconciler_stalled",
            "invariant_broken", "refund_stuck", "replication_down"} <= alert_codes()


def test_the_runbook_names_every_alert_the_code_raises():
    rows = set(re.findall(r"(?m)^\| `([a-z_]+)` \|", runbook()))
    missing = sorted(alert_codes() - rows)
    assert not missing, f"add to the runbook in docs/deploy.md: {missing}"
    stale = sorted(rows - alert_codes())
    assert not stale, f"runbook rows for alerts the code no longer raises: {stale}"


def test_the_runbook_commands_are_commands_of_the_cli():
    from otc_bridge.cli import main

    # `otc-bridge <command>`, not the unit or the user (`systemctl restart otc-bridge`, `-u otc-bridge`).
    used = set(re.findall(r"(?<!-u )(?<![\w/-])otc-bridge ([a-z][a-z-]+)", runbook()))
    assert {"attention", "audit", "redrive-payout", "resolve", "reconcile", "backup"} <= used
    assert used <= set(main.commands), sorted(used - set(main.commands))


def test_every_deploy_file_is_linked_from_the_deploy_doc():
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        assert f"(../{path.relative_to(ROOT)})" in text, path


# --- nginx in front of a live bridge ------------------------------------------------------------

@pytest.fixture
def bridge_config(bridge_config):
    """The test bridge with a live stream that beats every 0.2 s."""
    return bridge_config.replace(stream_poll_seconds=0.05, stream_heartbeat_seconds=0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nginx_proxy(live_bridge, tmp_path) -> Iterator[str]:
    """nginx, in one foreground process, serving the shipped site on free loopback ports in
    front of the live test bridge; yields its https base URL."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=otc.example.com"], check=True, capture_output=True,
                   timeout=60)
    http_port, https_port = free_port(), free_port()
    upstream = urlsplit(live_bridge).netloc
    site = NGINX_SITE.read_text(encoding="utf-8")
    site = site.replace("/etc/letsencrypt/live/otc.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/otc.example.com/privkey.pem", str(key))
    site = site.replace("server 127.0.0.1:5580;", f"server {upstream};")
    site = re.sub(r"(?m)^\s*listen \[::\]:.*$", "", site)  # no IPv6 needed on loopback
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(f"    {kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {tmp_path}/site.conf;\n}}\n")
    proc = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"https://127.0.0.1:{https_port}"
    try:
        deadline = time.monotonic() + 10
        while True:  # bounded wait for the listening socket
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_nginx_proxies_the_bridge_with_its_limits_and_an_unbuffered_stream(nginx_proxy):
    session = requests.Session()
    insecure = {"verify": False, "timeout": 10}  # the test's self-signed certificate (per call: the
    # environment's REQUESTS_CA_BUNDLE would override a session-wide setting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        answer = session.get(nginx_proxy + "/api/stats", **insecure)
        assert answer.status_code == 200, answer.text
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-Id"])  # nginx's $request_id
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
        too_big = session.post(nginx_proxy + "/api/orders", data=b"x" * (Config().max_body_bytes + 1),
                               headers={"Content-Type": "application/json"}, **insecure)
        assert too_big.status_code == 413 and "nginx" in too_big.text  # refused before the bridge
        started = time.monotonic()
        with session.get(nginx_proxy + "/api/stream", stream=True, **insecure) as stream:
            assert stream.status_code == 200
            lines = []
            for line in stream.iter_lines(chunk_size=1):
                lines.append(line)
                if line.startswith(b":"):
                    break
        # The stream's first lines and a heartbeat comment (every 0.2 s here) came through at
        # once: a few bytes that a buffering proxy would have held back. (Two things turn it
        # off: the site's proxy_buffering, checked by the parse test above, and the bridge's
        # own X-Accel-Buffering: no.)
        assert lines[0].startswith(b"retry:") and time.monotonic() - started < 3, lines
