"""Where skystate keeps its files (``SKYSTATE_HOME``, default ``~/.skystate``), owner-only.

The home holds the state, request records and logs, local node folders and task secrets
while their requests and jobs run, so it is private to its user: the folder is 0700 and
everything skystate creates under it is 0700 (folders) or 0600 (files). Two mechanisms:

- ``PRIVATE_UMASK`` (0o077), set by the processes that create home content (the API
  server and its workers, the runtime agent and CLI, ``hostctl``), so new files are
  private. Not by the skystate CLI: it also writes files the user asked for elsewhere
  (``init``, ``plan -o``); the few home files an in-process client makes are opened
  0600 explicitly;
- ``secure_home``: a home found wider than 0700 is *fixed*, not refused — the folder and
  every skystate-made file and folder in it lose their group/other bits (job files the
  user's jobs made in a local node's ``home/`` and ``root/`` are left as they are: the
  0700 home already hides them). The API server also fixes the home's own entries at
  every start, so a file a client made with a wider umask (the server log) is fixed.

It refuses (``InsecureHomeError``) a home it cannot make private: one owned by another
user, or one that is the user's own home folder or ``/`` (never chmod those trees).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

PRIVATE_UMASK = 0o077
# Job content inside local node folders (``local/<cluster>/node-<rank>/{home,root}``).
_JOB_CONTENT = ("home", "root")
_secured: set[str] = set()


def home() -> Path:
    path = Path(os.environ.get("SKYSTATE_HOME", "~/.skystate")).expanduser()
    key = str(path)
    if key in _secured:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        ensure_private_home(path)
        _secured.add(key)
    return path


def ensure_private_home(path: Path) -> None:
    """Create the home 0700; a home that exists with wider modes is secured at once."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    resolved = _checked(path)
    if stat.S_IMODE(resolved.stat().st_mode) & 0o077:
        secure_home(path)


def secure_home(path: Path, depth: int | None = None) -> list[Path]:
    """Make the home and what skystate made in it owner-only; the paths it changed.

    ``depth``: only that many levels below the home (1: its own entries); all if None.
    """
    resolved = _checked(path)
    changed = [Path(p) for p in _private_tree(str(resolved), depth)]
    if changed:
        print(f"skystate: made {len(changed)} path(s) in SKYSTATE_HOME {path} owner-only "
              "(it was readable by others)", file=sys.stderr)
    return changed


def _checked(path: Path) -> Path:
    """The home, resolved; InsecureHomeError if it cannot be made owner-only."""
    from skystate.exceptions import InsecureHomeError

    resolved = path.resolve()
    info = resolved.stat()
    if info.st_uid != os.getuid():
        raise InsecureHomeError(
            f"SKYSTATE_HOME {path} belongs to uid {info.st_uid}, not to you (uid "
            f"{os.getuid()}); skystate keeps secrets there, so it must be yours: set "
            "SKYSTATE_HOME to a folder of your own")
    if resolved in (Path("/"), Path.home().resolve()):
        raise InsecureHomeError(
            f"SKYSTATE_HOME {path} is {'/' if resolved == Path('/') else 'your home folder'};"
            " skystate makes its home owner-only and would change every file in it: set "
            "SKYSTATE_HOME to a folder of its own (default ~/.skystate)")
    return resolved


def _private_tree(top: str, depth: int | None) -> list[str]:
    """chmod go-rwx the tree (symlinks and local nodes' job content skipped); changed."""
    changed = [top] if _make_private(top, os.lstat(top).st_mode) else []
    stack: list[tuple[str, tuple[str, ...], int]] = [(top, (), 0)]
    while stack:
        folder, rel, level = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode):
                continue  # chmod would follow it out of the home
            if _make_private(entry.path, info.st_mode):
                changed.append(entry.path)
            parts = (*rel, entry.name) if len(rel) < 4 else rel  # the first four suffice
            deeper = depth is None or level + 1 < depth
            if stat.S_ISDIR(info.st_mode) and deeper and not _is_job_content(parts):
                stack.append((entry.path, parts, level + 1))
    return changed


def _is_job_content(parts: tuple[str, ...]) -> bool:
    """``local/<cluster>/node-<rank>/{home,root}``: what a local node's jobs made."""
    return (len(parts) == 4 and parts[0] == "local" and parts[2].startswith("node-")
            and parts[3] in _JOB_CONTENT)


def _make_private(path: str, mode: int) -> bool:
    if not stat.S_IMODE(mode) & 0o077:
        return False
    try:
        os.chmod(path, stat.S_IMODE(mode) & 0o700)
    except OSError:
        return False  # gone meanwhile, or not ours
    return True


def use_private_umask() -> int:
    """Entry points: files created from now on are owner-only; the previous umask."""
    return os.umask(PRIVATE_UMASK)


def state_db_path() -> Path:
    return home() / "state.json"


def state_lock_path() -> Path:
    return home() / "state.lock"


def local_clusters_dir() -> Path:
    return home() / "local"


def config_path() -> Path:
    return home() / "config.yaml"
