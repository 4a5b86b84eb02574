"""Hot reload: keep the current Policy and swap it when the file changes or on SIGHUP.

A reload loads the whole file and swaps one reference; an invalid file is logged and the
old policy stays. Readers just read ``holder.policy`` (a single attribute read, atomic in
CPython) and keep the object for the rest of their request, so a swap never changes a
request mid-flight.

Change detection polls ``stat()`` (mtime, size, inode) once a second from a daemon thread:
no extra dependencies, one syscall per second. The SIGHUP handler only wakes that thread
(signal handlers run between bytecodes of the main thread; loading there could deadlock
with a reload already holding the lock).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Callable

from router.policy import Policy, PolicyError, load_policy

log = logging.getLogger(__name__)

_Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode), None when missing


def _signature(path: Path) -> _Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class PolicyHolder:
    """The live policy for a gateway process."""

    def __init__(self, path: str | Path, *, poll_interval_s: float = 1.0,
                 on_swap: Callable[[Policy], None] | None = None):
        self.path = Path(path)
        self.poll_interval_s = poll_interval_s
        self._on_swap = on_swap
        self._reload_lock = threading.Lock()
        self._seen = _signature(self.path)
        self._policy: Policy = load_policy(self.path)  # raises PolicyError: no policy, no gateway
        _log_warnings(self._policy)
        self.last_error: str | None = None
        self.reloads = 0
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by SIGHUP: reload now, even if the file looks unchanged
        self._thread: threading.Thread | None = None
        self._previous_sighup = None
        self._installed_sighup = False

    @property
    def policy(self) -> Policy:
        return self._policy

    def reload(self) -> bool:
        """Load the file again; swap and return True when valid, else log and keep the old one."""
        with self._reload_lock:
            self._seen = _signature(self.path)
            try:
                new = load_policy(self.path)
            except PolicyError as exc:
                self.last_error = "\n".join(exc.redacted())
                log.error("policy reload failed; keeping the policy loaded before (values hidden; "
                          "`tandem policy check %s` shows them):\n%s", self.path, self.last_error)
                return False
            self._policy = new
            _log_warnings(new)
            self.last_error = None
            self.reloads += 1
            log.info("policy reloaded from %s (%d routes, %d backends)",
                     self.path, len(new.routes), len(new.backends))
        if self._on_swap is not None:
            try:
                self._on_swap(new)
            except Exception:  # a listener bug must not stop future reloads
                log.exception("policy on_swap callback failed")
        return True

    def changed(self) -> bool:
        """Whether the file's stat signature differs from the last load attempt."""
        return _signature(self.path) != self._seen

    def start(self) -> None:
        """Install the SIGHUP handler (main thread only) and start the polling thread."""
        if self._thread is not None:
            return
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)
            self._installed_sighup = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="policy-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and restore the previous SIGHUP handler."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._installed_sighup and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._previous_sighup or signal.SIG_DFL)
            self._installed_sighup = False
        self._wake.clear()

    def _on_sighup(self, signum, frame) -> None:
        self._wake.set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            forced = self._wake.wait(self.poll_interval_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            if forced:
                log.info("SIGHUP: reloading policy %s", self.path)
            # a missing file (mid atomic-rename, or deleted) is retried next tick, not loaded
            if forced or (self.changed() and _signature(self.path) is not None):
                try:
                    self.reload()
                except Exception:  # never let the watcher die silently
                    log.exception("unexpected error while reloading policy %s", self.path)


def _log_warnings(policy: Policy) -> None:
    for line in policy.warnings():
        log.warning("%s", line)
