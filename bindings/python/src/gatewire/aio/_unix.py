"""Binding a Unix-domain socket safely. Mirrors
``gatewire::transport::unix::bind`` (hostile inputs I1 and I3):

1. The path must fit in ``sun_path`` (108 bytes with the terminating NUL on
   Linux, 104 elsewhere); a longer one fails up front instead of being
   truncated by the kernel.
2. The parent directory is the real access control. A missing parent is
   created with mode ``0700`` (set explicitly; the umask is not relied
   upon). An existing parent must be a directory owned by us (or root)
   and writable by neither group nor others, so ``/tmp`` itself is
   refused: use a private directory.
3. A symbolic link at the socket path is refused, as is anything there that
   is not a socket.
4. An existing socket is probed with a connect: if something answers, the
   bind fails with ``EADDRINUSE`` and leaves it alone; if the connection is
   refused, the socket is stale and is removed (only if it is still the same
   file).
5. After binding, the socket file is set to mode ``0600``.

Closing the listener removes the socket file if it is still the one we
created.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable

__all__ = ["DIR_MODE", "SOCKET_MODE", "SUN_PATH_LEN", "UnixListener", "bind"]

SUN_PATH_LEN = 108 if sys.platform.startswith("linux") else 104
"""Size of ``sockaddr_un.sun_path``, the terminating NUL included."""

DIR_MODE = 0o700
"""Mode of a directory :func:`bind` creates."""

SOCKET_MODE = 0o600
"""Mode :func:`bind` gives the socket file."""

_PROBE_TIMEOUT = 1.0


class UnixListener:
    """A listening Unix socket that removes its file when closed."""

    def __init__(self, server: asyncio.Server, path: str, file_id: tuple[int, int]) -> None:
        self.server = server
        self.path = path
        self._file_id = file_id

    def close(self) -> None:
        """Stops accepting and removes the socket file if it is still ours
        (a successor may have replaced it)."""
        self.server.close()
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._file_id:
                os.unlink(self.path)


def _check_len(path: str) -> None:
    n = len(os.fsencode(path))
    if n >= SUN_PATH_LEN:
        raise OSError(
            errno.ENAMETOOLONG,
            f"unix socket path `{path}` is {n} bytes; at most {SUN_PATH_LEN - 1} fit in sun_path",
        )


def _prepare_parent(directory: str) -> None:
    try:
        os.stat(directory)
    except FileNotFoundError:
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        os.chmod(directory, DIR_MODE)
    # Checked whether we created it or not: someone may have raced us.
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(errno.EACCES, f"socket directory `{directory}` is not a directory")
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise PermissionError(
            errno.EACCES,
            f"socket directory `{directory}` is owned by uid {st.st_uid}, not by us"
            f" (uid {me}) or root",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise PermissionError(
            errno.EACCES,
            f"socket directory `{directory}` is writable by group or others (mode {mode:04o});"
            " use a private directory with mode 0700",
        )


async def _clear_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"refusing to bind: `{path}` is a symbolic link")
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(
            errno.EEXIST, f"refusing to bind: `{path}` exists and is not a socket"
        )
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), _PROBE_TIMEOUT)
    except ConnectionRefusedError:
        # Stale: nobody listens. Remove it only if it is still the file we
        # probed.
        again = os.lstat(path)
        if (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino):
            os.unlink(path)
        return
    except (OSError, asyncio.TimeoutError) as e:
        raise OSError(
            errno.EADDRINUSE, f"address in use: cannot tell whether `{path}` is live ({e})"
        ) from e
    writer.close()
    raise OSError(errno.EADDRINUSE, f"address in use: a server is listening on `{path}`")


async def bind(
    path: str,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
) -> UnixListener:
    """Binds a listening socket at ``path`` following the rules in the
    module docs.

    Raises:
        OSError: ``ENAMETOOLONG`` for a path too long for ``sun_path``;
            :class:`PermissionError` for an unsafe parent directory;
            :class:`FileExistsError` for a symbolic link or a non-socket at
            the path; ``EADDRINUSE`` when a live server answers there;
            otherwise the underlying error.
    """
    _check_len(path)
    _prepare_parent(os.path.dirname(path) or ".")
    await _clear_stale(path)
    server = await asyncio.get_running_loop().create_unix_server(protocol_factory, path=path)
    try:
        st = os.lstat(path)
        listener = UnixListener(server, path, (st.st_dev, st.st_ino))
        os.chmod(path, SOCKET_MODE)
    except OSError:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return listener
