"""Build the rollout test app's images on the local engine from the lab base image."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPOSITORY = "keel-test/webapp"


def build_images(versions):
    """``versions``: {tag: healthy}. Returns the image references."""
    base = subprocess.run(["bash", os.path.join(ROOT, "lab/image/build.sh"), "bookworm"], check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split()[-1]
    refs = {}
    for tag, healthy in versions.items():
        ref = "%s:%s" % (REPOSITORY, tag)
        subprocess.run(["docker", "build", "-q", "-t", ref, "--build-arg", "BASE=" + base, "--build-arg", "APP_VERSION=" + tag,
                        "--build-arg", "APP_HEALTHY=%d" % int(healthy), os.path.join(ROOT, "tests/support/webapp")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        refs[tag] = ref
    return refs
