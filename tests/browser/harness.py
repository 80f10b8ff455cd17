"""What every Chromium test here needs: Debian's Chromium and Node.js (skipped, saying why,
when missing; a failure with ``STREAMREC_REQUIRE_BROWSER=1``, as .ci/run sets), the pinned
npm packages, a stack started with ``streamrec up`` in its own directory, and one run of a
playwright-core driver script that never leaves a browser process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.net import free_port
from streamrec.stack.servers import pid_alive

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SDK = ROOT / "sdk" / "js"


@dataclass(frozen=True)
class Tools:
    chromium: str
    node: str
    npm: str


def unavailable(reason: str) -> None:
    """Skip (or, with ``STREAMREC_REQUIRE_BROWSER=1``, fail) the test, saying why."""
    if os.environ.get("STREAMREC_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (STREAMREC_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def _npm_ci(tools: Tools, folder: Path) -> None:
    """The folder's pinned npm packages (what `make test` installs), if not there yet."""
    stamp = folder / "node_modules" / ".package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= (folder / "package-lock.json").stat().st_mtime:
        return
    out = subprocess.run([tools.npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                         cwd=folder, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        unavailable(f"npm ci in {folder.relative_to(ROOT)} failed: {out.stderr[-500:]}")


def find_tools(*npm_folders: Path) -> Tools:
    """Chromium, Node.js ≥ 20 and the npm packages of ``npm_folders``."""
    chromium = os.environ.get("STREAMREC_CHROMIUM") or shutil.which("chromium")
    node, npm = shutil.which("node"), shutil.which("npm")
    if not chromium:
        unavailable("no chromium on the PATH: `make browser` installs Debian's")
    if not node or not npm:
        unavailable("no node/npm on the PATH: the browser test drives Chromium from Node.js")
    assert chromium and node and npm
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    if int(version.strip().lstrip("v").split(".")[0]) < 20:
        unavailable(f"Node.js {version.strip()} is too old (20 or newer)")
    found = Tools(chromium, node, npm)
    for folder in npm_folders:
        _npm_ci(found, folder)
    return found


def cli(cwd: Path, env: dict[str, str], *args: str,
        timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """``streamrec ARGS`` run where the stack was started."""
    return subprocess.run([sys.executable, "-m", "streamrec.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def stack_env(cwd: Path, api_port: int, **settings: str) -> dict[str, str]:
    """This process's environment without any STREAMREC_ variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMREC_")}
    # One worker unless a test asks for more: the default (one per core) would make the
    # suite's stacks differ between machines.
    env.update(STREAMREC_STATE_DIR=str(cwd / ".streamrec"), STREAMREC_API_PORT=str(api_port),
               STREAMREC_WORKERS="1", OPENBLAS_NUM_THREADS="1", **settings)
    return env


#: How ``streamrec up`` fails when another server has the API's port: seen before the start,
#: or bound between that check and the API's own bind (the API exits).
PORT_TAKEN = ("is already in use by another program", "Address already in use")
#: API ports tried before a start counts as failed.
PORT_ATTEMPTS = 3


def _kill(pids: set[int]) -> None:
    for pid in pids:  # never leave a process behind
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def stack_up(cwd: Path, **settings: str) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """``streamrec up`` in ``cwd`` with ``settings`` on a free API port; yields the
    environment it ran with and its state (``.streamrec/stack.json``). Stops it with
    ``streamrec down`` and SIGKILLs anything of it still alive, even after a failure.

    A port picked free can be bound by another test's server before our API binds it (the
    API then exits with "Address already in use" and `up` fails; it happened while three
    test processes started servers side by side): such a start is stopped and retried on a
    new port, up to :data:`PORT_ATTEMPTS` ports."""
    state_file = cwd / ".streamrec" / "stack.json"
    pids: set[int] = set()
    env: dict[str, str] = {}
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            env = stack_env(cwd, free_port(), **settings)
            up = cli(cwd, env, "up", "--timeout", "90")
            if state_file.exists():
                started = json.loads(state_file.read_text())["processes"].values()
                pids.update(p["pid"] for p in started)
            said = up.stdout + up.stderr
            lost_port = any(taken in said for taken in PORT_TAKEN)
            if up.returncode == 0 or not lost_port or attempt == PORT_ATTEMPTS:
                break
            print(f"streamrec up lost API port {env['STREAMREC_API_PORT']}; trying another")
            cli(cwd, env, "down", timeout=90)
            _kill(pids)
            pids.clear()
        assert up.returncode == 0, said
        yield env, json.loads(state_file.read_text())
    finally:
        if state_file.exists():
            cli(cwd, env, "down", timeout=90)
        _kill(pids)


def kill_browser_leftovers(marker: str) -> None:
    """SIGKILL processes whose command line names ``marker`` (our Chromium profile folder:
    Chromium and its helpers, when the driver died before closing them)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


@contextmanager
def driver(tools: Tools, script: str, config: dict[str, Any], work: Path
           ) -> Iterator[subprocess.Popen[bytes]]:
    """``node SCRIPT CONFIG.json`` in its own process group, with ``userDataDir`` (the
    Chromium profile) and ``chromium`` added to ``config``; its output goes to
    ``work/driver.log``. On leaving, the driver gets ``timeout`` seconds to finish, then
    it and every Chromium process of the profile are killed."""
    profile = work / "chromium-profile"
    (work / "config.json").write_text(json.dumps(
        {**config, "chromium": tools.chromium, "userDataDir": str(profile)}))
    with open(work / "driver.log", "w") as out:
        proc = subprocess.Popen([tools.node, str(HERE / script), str(work / "config.json")],
                                cwd=HERE, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
            proc.wait(timeout=config.get("timeout", 300))
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            kill_browser_leftovers(str(profile))


def driver_result(work: Path, result: Path) -> dict[str, Any]:
    """The driver's result file, failing with the end of its log when it has none or it
    reports an error."""
    log = (work / "driver.log").read_text()[-3000:] if (work / "driver.log").exists() else ""
    assert result.exists(), log
    found: dict[str, Any] = json.loads(result.read_text())
    assert not found.get("error"), f"{found['error']}\n{log}"
    return found
