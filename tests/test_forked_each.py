"""A forked child that sends each part of its work as soon as it is done (homelab.forked.start_each): the parts in
order, one sent before the child died still read, nothing read after it, and the child waited for once."""

from __future__ import annotations

import os

import pytest

from homelab import forked

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")


def _parts(*steps):
    for step in steps:
        yield step()


def _dies():
    os._exit(3)


@needs_fork
def test_each_part_comes_in_order_and_then_no_more():
    child = forked.start_each(_parts, lambda: [1, 2], lambda: {"b": 2})
    assert child.next() == (True, [1, 2])
    assert child.next() == (True, {"b": 2})
    assert child.next() == (False, None)
    assert child.next() == (False, None)
    assert forked._RUNNING == set()  # waited for once it sent no more


@needs_fork
def test_a_part_sent_before_the_child_died_is_read():
    child = forked.start_each(_parts, lambda: "first", _dies, lambda: "never")
    assert [child.next(), child.next(), child.next()] == [(True, "first"), (False, None), (False, None)]
    assert forked._RUNNING == set()


@needs_fork
def test_a_part_that_does_not_pickle_ends_the_answers():
    child = forked.start_each(_parts, lambda: "first", lambda: (lambda: 0), lambda: "never")
    assert [child.next(), child.next(), child.next()] == [(True, "first"), (False, None), (False, None)]
    assert forked._RUNNING == set()


@needs_fork
def test_a_large_part_is_read_whole():
    big = bytes(range(256)) * 40_000  # 10 MB: many reads of the pipe
    child = forked.start_each(_parts, lambda: big, lambda: "after")
    assert child.next() == (True, big)
    assert child.next() == (True, "after")
    child.finish()
    assert forked._RUNNING == set()


@needs_fork
def test_a_child_waited_for_is_never_signalled_again(monkeypatch):
    child = forked.start_each(_parts, lambda: 1)
    assert child.next() == (True, 1)
    child.finish()
    killed = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append((pid, sig)))
    child.stop()  # its pid may be another process's by now
    assert killed == [] and forked._RUNNING == set()


@needs_fork
def test_a_child_stopped_early_is_ended():
    child = forked.start_each(_parts, lambda: 1, lambda: __import__("time").sleep(60))
    assert child.next() == (True, 1)
    pid = child._pid
    child.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert child.next() == (False, None) and forked._RUNNING == set()
