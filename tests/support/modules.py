"""Run a module's main() in this process, as Ansible would, and return its JSON result.

Used by the tests' `run_module` fixture and by the benchmarks. The module arguments go in
through ansible-core's `patch_module_args`; exit_json/fail_json print the result and exit.
"""

import contextlib
import io
import json

from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args


def call_module(main, args):
    """``(failed, result)`` of ``main()`` run with ``args``."""
    out = io.StringIO()
    # As on a managed host: once a test has imported controller code (filters), ansible-core
    # believes it runs on the controller and sends module.warn() to the display instead of the
    # result, where the tests (and Ansible) read warnings.
    was_controller = _internal.is_controller
    _internal.is_controller = False
    try:
        with patch_module_args(args), contextlib.redirect_stdout(out):
            try:
                main()
            except SystemExit:
                pass
    finally:
        _internal.is_controller = was_controller
    result = json.loads(out.getvalue())
    return bool(result.get("failed")), result
