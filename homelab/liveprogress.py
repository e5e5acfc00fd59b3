"""A pytest plugin that tells ``homelab verify`` when each host's live checks start and finish.

``homelab verify`` runs the vm-tests suite (``-p homelab.liveprogress``) with ``HOMELAB_PROGRESS_FD``
naming a pipe it reads; without that variable the plugin does nothing.  One JSON object a line:

    {"event": "start", "host": "tokiwa", "checks": 28}
    {"event": "finish", "host": "tokiwa", "passed": 27, "failed": 1, "skipped": 0}

A test's host is its ``lab_host`` user property, which the suite sets when it collects the test.
Standalone: imports nothing from homelab, as the suite's process needs only this file.
"""

from __future__ import annotations

import collections
import json
import os

FD_VARIABLE = "HOMELAB_PROGRESS_FD"


class Progress:
    def __init__(self, fd: int):
        self.out = os.fdopen(fd, "w", buffering=1)
        self.host_of: dict[str, str] = {}
        self.total: collections.Counter[str] = collections.Counter()
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.started: set[str] = set()

    def emit(self, **event) -> None:
        try:
            self.out.write(json.dumps(event) + "\n")
        except OSError:  # homelab stopped reading: the checks go on
            pass

    def pytest_collection_finish(self, session) -> None:
        for item in session.items:
            host = dict(item.user_properties).get("lab_host")
            if host is not None:
                self.host_of[item.nodeid] = host
                self.total[host] += 1

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        host = self.host_of.get(nodeid)
        if host is not None and host not in self.started:
            self.started.add(host)
            self.emit(event="start", host=host, checks=self.total[host])

    def pytest_runtest_logreport(self, report) -> None:
        host = self.host_of.get(report.nodeid)
        if host is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        counts = self.counts[host]
        counts[report.outcome] += 1
        if sum(counts.values()) == self.total[host]:
            self.emit(event="finish", host=host, passed=counts["passed"], failed=counts["failed"],
                      skipped=counts["skipped"])

    def pytest_unconfigure(self, config) -> None:
        try:
            self.out.close()
        except OSError:
            pass


def pytest_configure(config) -> None:
    fd = os.environ.get(FD_VARIABLE)
    if fd and fd.isdigit():
        config.pluginmanager.register(Progress(int(fd)), "homelab-liveprogress")
