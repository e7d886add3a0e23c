"""A real ipykernel driven through jupyter_client, the way a notebook front end drives it."""

from __future__ import annotations

import os
import re
import signal
import sys
from dataclasses import dataclass, field

from jupyter_client.manager import start_new_kernel


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@dataclass
class Reply:
    """What one execute request produced."""

    status: str
    stdout: str = ""
    stderr: str = ""
    error: dict | None = None
    outputs: list = field(default_factory=list)

    @property
    def value(self) -> str | None:
        """The text/plain of the execute_result, if any."""
        for msg in self.outputs:
            if msg["msg_type"] == "execute_result":
                return msg["content"]["data"].get("text/plain")
        return None

    @property
    def ename(self) -> str | None:
        return self.error["ename"] if self.error else None

    @property
    def evalue(self) -> str:
        return self.error["evalue"] if self.error else ""

    @property
    def traceback(self) -> str:
        return strip_ansi("\n".join(self.error["traceback"])) if self.error else ""


class Kernel:
    """Start a kernel in ``cwd`` with ``env``; ``run(code)`` executes a cell and returns a Reply.
    ``kernel_name`` is a kernelspec's name: "python3", or "nbworkers" (loads the extension)."""

    def __init__(self, cwd: str, env: dict | None = None, extra_args=(), kernel_name="python3"):
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
        for attempt in range(3):
            try:
                self.km, self.kc = start_new_kernel(
                    kernel_name=kernel_name, cwd=cwd, env=full_env, extra_arguments=list(extra_args)
                )
                break
            except RuntimeError as exc:
                # jupyter_client picks free ports, then the kernel binds them: on a machine
                # where other tests run, another process may take one in between ("Address
                # already in use", then "Kernel died before replying"). start_new_kernel has
                # shut that kernel down; start another on new ports.
                if "Kernel died" not in str(exc) or attempt == 2:
                    raise

    def run(self, code: str, timeout: float = 60) -> Reply:
        outputs = []

        def hook(msg):
            outputs.append(msg)

        content = self.kc.execute_interactive(
            code, output_hook=hook, timeout=timeout, allow_stdin=False
        )["content"]
        reply = Reply(status=content["status"], outputs=outputs)
        for msg in outputs:
            if msg["msg_type"] == "stream":
                if msg["content"]["name"] == "stdout":
                    reply.stdout += msg["content"]["text"]
                else:
                    reply.stderr += msg["content"]["text"]
        if content["status"] == "error":
            reply.error = content
        return reply

    def ok(self, code: str, timeout: float = 60) -> Reply:
        """Run ``code`` and fail the test with the kernel's traceback if it raised."""
        reply = self.run(code, timeout)
        assert reply.status == "ok", f"cell failed:\n{code}\n{reply.traceback}"
        return reply

    def eval(self, expr: str, timeout: float = 60):
        """The Python value of ``expr`` in the kernel (through its repr)."""
        import ast

        text = self.ok(f"print(repr(({expr})))", timeout).stdout.strip()
        return ast.literal_eval(text)

    def restart(self) -> None:
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=60)

    def kill(self) -> None:
        """SIGKILL the kernel process, as a crash would, then start a new one."""
        process = self.km.provisioner.process
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=60)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def wait_for(kernel: Kernel, expr: str, timeout: float = 10) -> None:
    """Wait until ``expr`` is true in the kernel (no fixed sleeps)."""
    kernel.ok(
        f"import time as _t\n_d = _t.time() + {timeout}\n"
        f"while not ({expr}) and _t.time() < _d: _t.sleep(0.02)\n"
        f"assert {expr}, {expr!r}"
    )


def click(kernel: Kernel, model_expr: str) -> None:
    """Click a button the way JupyterLab does: a comm message from the front end."""
    send_custom(kernel, model_expr, {"event": "click"})


def send_custom(kernel: Kernel, model_expr: str, content: dict) -> None:
    """A widget's custom message from the front end (an anywidget's ``model.send``)."""
    _comm_msg(kernel, model_expr, {"method": "custom", "content": content})


def set_from_front_end(kernel: Kernel, model_expr: str, **state) -> None:
    """Traits of a widget set in the browser (``model.set`` and ``save_changes``)."""
    _comm_msg(kernel, model_expr, {"method": "update", "state": state, "buffer_paths": []})


def view_action(kernel: Kernel, panel_expr: str, action: str) -> None:
    """A button of the trace selected in a panel's view, clicked in the browser."""
    trace_id = kernel.eval(f"{panel_expr}.view.selected")
    send_custom(kernel, f"{panel_expr}.view", {"action": action, "id": trace_id})


def _comm_msg(kernel: Kernel, model_expr: str, data: dict) -> None:
    model_id = kernel.eval(f"{model_expr}.model_id")
    msg = kernel.kc.session.msg("comm_msg", {"comm_id": model_id, "data": data})
    kernel.kc.shell_channel.send(msg)
