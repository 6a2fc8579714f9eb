# Make `ansible_collections.keel.platform` importable from this checkout (collections/ holds a
# link to it), next to the collections bundled with the `ansible` package.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "collections"))


import json  # noqa: E402

import pytest  # noqa: E402


class ModuleExit(Exception):
    """Raised instead of sys.exit: the module has printed its JSON result."""


@pytest.fixture
def run_module(monkeypatch, capsys):
    """Run a module's main() with args (ansible-core's patch_module_args); return (failed, result)."""
    from ansible.module_utils.testing import patch_module_args

    def _run(main, args):
        def fake_exit(code=0):
            raise ModuleExit(code)

        monkeypatch.setattr("sys.exit", fake_exit)
        with patch_module_args(args):
            try:
                main()
            except ModuleExit:
                pass
        result = json.loads(capsys.readouterr().out)
        return bool(result.get("failed")), result

    return _run
