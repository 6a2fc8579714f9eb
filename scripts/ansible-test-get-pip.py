"""Stand-in for pip's get-pip.py, for ansible-test's sanity virtualenvs.

ansible-test creates each sanity virtualenv without pip and bootstraps pip by downloading
get-pip.py from a host this machine cannot reach; it accepts a pre-placed script instead
(~/.ansible/test/cache/get_pip_<version>.py), run as __main__ with pip's install arguments.
This one bootstraps pip from Python's own ensurepip and then installs the pip version asked
for from the configured package index.
"""

import subprocess
import sys

# Options that only get-pip.py understands.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
