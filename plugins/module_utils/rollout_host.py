# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What container_rollout does on the Docker host itself, beside the engine's API: the
per-service lock, the secret files and the check that a host port is free.

These need the module to run on the engine's host (the default ``unix://`` socket): the lock is
a file lock, and secret files are bind-mounted from the host's filesystem.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
import stat
import time

SECRET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class LockTimeout(Exception):
    pass


class UnsafeLockDir(Exception):
    """The lock directory could be written by someone else (who could swap the lock file)."""


def safe_directory(directory):
    """Create ``directory`` (0700) if needed and check it is a real directory owned by this
    user that neither group nor others may write; raises :class:`UnsafeLockDir` otherwise."""
    if not os.path.lexists(directory):
        os.makedirs(directory, 0o700)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a directory"
        raise UnsafeLockDir("lock_dir %s must be a directory (not a symlink) owned by uid %d and writable by no one else "
                            "(it is %s, uid %d, mode %04o)" % (directory, os.geteuid(), kind, info.st_uid, stat.S_IMODE(info.st_mode)))


class ServiceLock(object):
    """An exclusive ``flock`` on ``DIR/keel-container-rollout-SERVICE.lock``, waited for up to
    ``timeout`` seconds. The kernel drops it when the process ends, however it ends. ``DIR``
    must be this user's alone (see :func:`safe_directory`) and the file is opened without
    following a symlink."""

    def __init__(self, directory, service, timeout, clock=time.monotonic, sleep=time.sleep):
        self.path = os.path.join(directory, "keel-container-rollout-%s.lock" % service)
        self.timeout, self.clock, self.sleep = timeout, clock, sleep
        self.fd = None
        self.waited = 0.0

    def acquire(self):
        safe_directory(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeLockDir("%s is not a regular file" % self.path)
        start = self.clock()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            self.waited = self.clock() - start
            if self.waited >= self.timeout:
                holder = _read(fd)
                os.close(fd)
                raise LockTimeout("another container_rollout run holds %s%s; waited %.0f s (lock_timeout)"
                                  % (self.path, " (process %s)" % holder if holder else "", self.waited))
            self.sleep(min(0.2, max(0.01, self.timeout - self.waited)))
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return ""


def numeric_user(user):
    """``(uid, gid)`` of a Docker ``user`` value when it is numeric (``1000``, ``1000:1000``);
    ``(0, 0)`` for an empty one (root); None for a name."""
    if not user:
        return 0, 0
    uid, _sep, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return None
    return int(uid), int(gid or 0)


REMOVAL_IMAGES = "removing-images"


class SecretFiles(object):
    """Secrets as files: ``BASE/SERVICE/gN/NAME``, mode 0400 in a 0500 directory, both owned by
    the container's user, bind-mounted read-only into that generation's containers. ``BASE``
    and ``BASE/SERVICE`` are root's alone (0700)."""

    def __init__(self, base, service):
        self.base = base
        self.root = os.path.join(base, service)

    def directory(self, generation):
        return os.path.join(self.root, "g%d" % generation)

    def write(self, generation, secrets, uid, gid):
        path = self.directory(generation)
        for parent in (self.base, self.root):
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o700)
            os.chmod(parent, 0o700)
        if os.path.lexists(path):
            shutil.rmtree(path)
        os.mkdir(path, 0o700)
        for name, value in sorted(secrets.items()):
            fd = os.open(os.path.join(path, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
            try:
                os.write(fd, value.encode("utf-8") if isinstance(value, str) else value)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, 0o400)
            finally:
                os.close(fd)
        os.chown(path, uid, gid)
        os.chmod(path, 0o500)
        return path

    def remove(self, generation):
        path = self.directory(generation)
        if os.path.lexists(path):
            shutil.rmtree(path)

    def generations(self):
        if not os.path.isdir(self.root):
            return []
        return sorted(int(name[1:]) for name in os.listdir(self.root) if name[:1] == "g" and name[1:].isdigit())

    # A service's removal (container_rollout phase remove) writes down its images before its
    # containers go: the containers' labels are where the history lives, and a removal cut
    # short after them would otherwise leave the images behind for good.
    def removal_images(self):
        try:
            with open(os.path.join(self.root, REMOVAL_IMAGES)) as handle:
                return [line.strip() for line in handle if line.strip().startswith("sha256:")]
        except (IOError, OSError):
            return []

    def save_removal_images(self, image_ids):
        for parent in (self.base, self.root):
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o700)
            os.chmod(parent, 0o700)
        path = os.path.join(self.root, REMOVAL_IMAGES)
        fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, "".join(i + "\n" for i in image_ids).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path + ".new", path)

    def forget_removal(self):
        """The removal is complete: its record goes, and the service's directory if nothing is left in it."""
        path = os.path.join(self.root, REMOVAL_IMAGES)
        if os.path.lexists(path):
            os.remove(path)
        if os.path.isdir(self.root) and not os.listdir(self.root):
            os.rmdir(self.root)


def ports_in_use(host_ip, ports):
    """The ports of ``ports`` that cannot be bound on ``host_ip`` now (something listens).

    An address this machine does not have (EADDRNOTAVAIL) is not checked: the engine will say.
    """
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    busy = []
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"; a listener is
        try:
            sock.bind((host_ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                busy.append(port)
        finally:
            sock.close()
    return busy
