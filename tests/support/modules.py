"""Run a module's main() in this process, as Ansible would, and return its JSON result.

Used by the tests' `run_module` fixture and by the benchmarks. The module arguments go in
through ansible-core's `patch_module_args`; exit_json/fail_json print the result and exit.
"""

import contextlib
import io
import json

from ansible.module_utils.testing import patch_module_args


def call_module(main, args):
    """``(failed, result)`` of ``main()`` run with ``args``."""
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue())
    return bool(result.get("failed")), result
