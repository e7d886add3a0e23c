"""A JupyterLab server for the browser tests: started on 127.0.0.1 with a token in a temporary
folder, with its own Jupyter config, data, runtime and settings folders (the venv's kernelspecs
stay visible), and stopped through its REST API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# JupyterLab settings that keep the first run quiet and every cell in the DOM
SETTINGS = {
    # No "Would you like to receive official Jupyter news?" toast, no update check
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    # Attach every cell to the DOM, whether it is in the viewport or not
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    app: str = "jupyterlab"

    def notebook_url(self, name: str) -> str:
        """``name`` opened alone: in JupyterLab, in a workspace of its own (no tabs restored
        from others); in Notebook 7, in its own page."""
        if self.app == "notebook":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        workspace = "".join(c if c.isalnum() else "-" for c in name)
        return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def _request(self, path: str, method: str = "GET", timeout: float = 10):
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        return urllib.request.urlopen(request, timeout=timeout)

    def wait_kernel_idle(self, timeout: float = 90) -> None:
        """Poll the REST API until a kernel has started and is idle."""
        deadline = time.monotonic() + timeout
        kernels: list = []
        while True:
            try:
                with self._request("/api/kernels") as response:
                    kernels = json.load(response)
            except urllib.error.HTTPError as e:
                # jupyter_server answers 500 when asked while a kernel is still starting (its
                # last_activity not set yet: a TraitError in kernel_model); ask again
                if e.code != 500:
                    raise
            if any(k.get("execution_state") == "idle" for k in kernels):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel idle in {timeout} s: {kernels}")
            time.sleep(0.2)

    def wait_ready(self, timeout: float = 120) -> None:
        """Poll the REST API until the server answers (or fail with its log)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited:\n{self.log_tail()}")
            try:
                with self._request("/api/status", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not answer in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Shut down the server and its kernels; kill it if it does not exit."""
        if self.process.poll() is None:
            try:
                self._request("/api/shutdown", method="POST").close()
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                print(f"JupyterLab shutdown request failed ({exc}); terminating it")
                self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


def start_lab(root: Path, notebooks: Path, app: str = "jupyterlab") -> Lab:
    """Start JupyterLab (or, with ``app="notebook"``, Notebook 7) serving ``notebooks``;
    Jupyter's own folders go under ``root``."""
    config = "LabApp" if app == "jupyterlab" else "JupyterNotebookApp"
    settings = root / "lab-settings"
    for plugin, values in SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NBWORKERS_"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(root / "jupyter-config"),
        JUPYTER_DATA_DIR=str(root / "jupyter-data"),  # kernelspecs in sys.prefix stay visible
        JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"),
        IPYTHONDIR=str(root / "ipython"),
    )
    port = free_port()
    token = os.urandom(16).hex()
    log = root / f"{app}.log"
    cmd = [
        sys.executable,
        "-m",
        app,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebooks}",
        f"--{config}.user_settings_dir={settings}",
        f"--{config}.workspaces_dir={root / 'lab-workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI runs as root
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd, cwd=notebooks, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, notebooks, process, log, app)
    try:
        lab.wait_ready()
    except BaseException:
        lab.stop()
        raise
    return lab
