"""Safe file I/O for run folders: atomic writes, and a lock so one run folder has one writer.

Atomic writes: a reader (or a resumed run) sees the old file or the new one, never half of one. The content
goes to a temporary file in the same folder, is flushed and fsynced, then renamed over the target
(`os.replace` is atomic on POSIX and Windows). A process killed mid-write leaves at most a stray `.tmp` file.
The new file gets the mode an ordinary `open(path, "w")` would give it (0666 less the umask, e.g. 0644), and a
failed write (a full disk, say) raises `AtomicWriteError`, one line naming the error and the file, with the
previous version left in place. Used for checkpoints, run records, cached teacher features and decoded clips.

Folder lock: `folder_lock(folder, wait)` holds an exclusive `fcntl.flock` on `folder/.lock` while a run writes
its records, so a second launch of the same run waits for the first (or reports it) instead of writing the
same files from two processes. The operating system releases the lock when its holder exits, even by a kill.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from mvd_lib.errors import UserError

LOCK_NAME = ".lock"  # the lock file inside a locked folder


class AtomicWriteError(OSError, UserError):
    """Writing a file failed (e.g. no space left on device); the previous version of the file is kept."""


class FolderLockedError(UserError, RuntimeError):
    """Another process holds the folder's lock (the message names it)."""


# ----------------------------------------------------------------------------------------------- atomic writes
def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only on systems without /proc)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call `write(f)` on a temporary file opened with `mode`, then rename it over `path`.

    The file's permissions follow the umask (0644 under umask 022). If writing fails with an operating-system
    error (found anywhere in the exception's chain, e.g. behind torch.save's RuntimeError), AtomicWriteError is
    raised, one line naming that error and `path`; the temporary file is removed, the old `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600; records are as readable as any file
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os_err = _os_error_in_chain(err)
        if os_err is not None and not isinstance(err, AtomicWriteError):
            kept = f"the previous {path.name} is kept" if path.exists() else f"{path.name} was not written"
            raise AtomicWriteError(os_err.errno, f"{os_err.strerror}: could not write {path}; {kept}") from err
        raise
    return path


def _os_error_in_chain(err: BaseException) -> OSError | None:
    """The first OSError with an errno in `err`, its cause or its context (torch.save wraps write errors)."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        e = e.__cause__ or e.__context__
    return None


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON (indented; numpy scalars, tensors and paths converted), written atomically."""
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=_json_default) + "\n"), "w")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """A text file, written atomically."""
    return atomic_write(path, lambda f: f.write(text), "w")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ----------------------------------------------------------------------------------------------- folder lock
_HELD: dict[str, list[Any]] = {}  # resolved folder -> [open lock file, depth] held by this process


def lock_holder(folder: str | os.PathLike) -> dict[str, Any] | None:
    """What the current (or last) holder of `folder`'s lock wrote about itself: pid, host, since, command."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def _describe_holder(folder: Path) -> str:
    info = lock_holder(folder)
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"process {info.get('pid')} on {info.get('host')} (since {since}: {info.get('command', '?')})"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, wait: bool | float = True,
                on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (created if needed) for the `with` block; yields the folder.

    wait: True waits as long as it takes, False raises FolderLockedError at once if another process holds the
        lock, a number waits at most that many seconds and then raises FolderLockedError.
    on_wait: called once with a one-line description of the holder when the lock is busy (e.g. `print`).

    The lock is `fcntl.flock` on `folder/.lock`; its holder writes its pid, host, start time and command line
    there. Re-entrant within a process (a nested `folder_lock` of the same folder returns at once)."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield folder
        finally:
            _HELD[key][1] -= 1
        return
    if not isinstance(wait, bool) and not wait >= 0:
        raise ValueError(f"wait must be True, False or a number of seconds >= 0, got {wait!r}")
    f = open(folder / LOCK_NAME, "a+")
    try:
        deadline = None if wait is True else time.monotonic() + (0.0 if wait is False else float(wait))
        told = False
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if deadline is not None and time.monotonic() >= deadline:
                waited = "" if wait is False else f" after waiting {float(wait):g} s"
                raise FolderLockedError(f"{folder} is in use by {_describe_holder(folder)}{waited}; wait for it to "
                                        f"finish or stop it (its lock: {folder / LOCK_NAME})")
            if not told and on_wait is not None:
                on_wait(f"waiting for {_describe_holder(folder)} to release {folder}")
                told = True
            time.sleep(0.05)
        f.seek(0)
        f.truncate()
        command = " ".join(" ".join(getattr(sys, "orig_argv", sys.argv)).split())[:200]
        f.write(json.dumps({"pid": os.getpid(), "host": platform.node(), "since": time.time(),
                            "command": command}) + "\n")
        f.flush()
        _HELD[key] = [f, 1]
        try:
            yield folder
        finally:
            del _HELD[key]
    finally:
        f.close()  # closing the file releases the lock


def holds_lock(folder: str | os.PathLike) -> bool:
    """True if this process holds `folder`'s lock."""
    return str(Path(folder).resolve()) in _HELD

