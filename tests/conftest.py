# Make `ansible_collections.keel.platform` importable from this checkout (collections/ holds a
# link to it), next to the collections bundled with the `ansible` package.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "collections"))

import pytest  # noqa: E402


@pytest.fixture
def run_module():
    """Run a module's main() with args (ansible-core's patch_module_args); return (failed, result)."""
    from tests.support.modules import call_module

    return call_module
