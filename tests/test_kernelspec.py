"""The "Python 3 (nbworkers)" kernel that installing the package installs: no %load_ext needed."""

from __future__ import annotations

import sys

from jupyter_client.kernelspec import KernelSpecManager

from tests.kernel import Kernel

LOADED_ONCE = (
    "import nbworkers.extension as _x\n"
    "_ip = get_ipython()\n"
    "print(len(_x._shells), _ip.events.callbacks['post_run_cell'].count(_x._after_cell),\n"
    "      sum(type(c).__name__ == 'NBWorkers' for c in _ip.configurables),\n"
    "      emit is __import__('nbworkers').emit)"
)


def test_the_package_installs_a_kernelspec_that_loads_the_extension():
    spec = KernelSpecManager().get_kernel_spec("nbworkers")
    assert spec.display_name == "Python 3 (nbworkers)"
    assert spec.language == "python"
    assert spec.argv == [
        "python",
        "-m",
        "ipykernel_launcher",
        "--ext",
        "nbworkers.kernel_extension",
        "-f",
        "{connection_file}",
    ]


def test_the_nbworkers_kernel_has_emit_and_the_magics_without_load_ext(tmp_path):
    k = Kernel(
        str(tmp_path), env={"NBWORKERS_DB": str(tmp_path / "q.duckdb")}, kernel_name="nbworkers"
    )
    try:
        # jupyter_client swaps the spec's "python" for its own interpreter: this venv's
        assert k.eval("__import__('sys').executable") == sys.executable
        reply = k.ok("%%worker double\nevent * 2")
        assert any(m["msg_type"] == "display_data" for m in reply.outputs)  # its panel
        k.ok("mid = emit(21, 'double')\nimport nbworkers as nw\nassert nw.wait(timeout=20)")
        assert k.eval("nw.traces('double')[0].result") == 42
        assert k.eval("nw.traces('double')[0].message_id == mid")
        assert k.ok(LOADED_ONCE).stdout.split() == ["1", "1", "1", "True"]
        # A notebook that also says %load_ext (written for any kernel) still works, and the
        # line says nothing (#21: IPython's "already loaded" read like an error)
        reply = k.ok("%load_ext nbworkers")
        assert (reply.stdout, reply.stderr) == ("", "")
        assert not [m for m in reply.outputs if m["msg_type"] in ("stream", "display_data")]
        assert k.ok(LOADED_ONCE).stdout.split() == ["1", "1", "1", "True"]
        k.ok("emit(5, 'double')\nassert nw.wait(timeout=20)")
        assert k.eval("[t.result for t in nw.traces('double')]") == [10, 42]
        assert k.eval("nw.counts('double')['done']") == 2
        # ...and %unload_ext nbworkers then stops it, as in any kernel
        k.ok("%unload_ext nbworkers")
        assert k.eval("len(__import__('nbworkers.extension').extension._shells)") == 0
    finally:
        k.shutdown()


def test_load_ext_twice_in_a_plain_kernel_is_harmless(kernel):
    # The `kernel` fixture is a python3 kernel that ran %load_ext nbworkers once
    kernel.ok("%load_ext nbworkers")
    assert kernel.ok(LOADED_ONCE).stdout.split() == ["1", "1", "1", "True"]
    kernel.ok("%%worker w\nevent + 1")
    kernel.ok("emit(1, 'w')\nassert nw.wait(timeout=20)")
    assert kernel.eval("nw.traces('w')[0].result") == 2
