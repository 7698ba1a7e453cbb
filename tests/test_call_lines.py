"""Call lines (actors.transport): a driver's authenticated local connection to each shard."""

from __future__ import annotations

import os
import stat

import pytest
from multiprocessing.connection import AuthenticationError, Client

from actors.transport import CallLines, pack, serve_line, unpack


def echo_or_raise(message: bytes) -> bytes:
    (word,) = unpack(message)
    if word == "boom":
        raise ValueError("the shard refused: boom")
    return pack(word.upper())


@pytest.fixture
def lines():
    lines = CallLines(2)
    yield lines
    lines.close()


def test_calls_and_answers_go_both_ways_and_the_line_ends_when_the_driver_hangs_up(lines):
    threads = [serve_line(lines.address(s), lines.authkey, echo_or_raise) for s in range(2)]
    for s in range(2):
        lines.connect(s)
    for word in ("a", "bb", "x" * 100_000):
        for s in range(2):
            lines.send(s, pack(word))
        assert [unpack(lines.receive(s)) for s in range(2)] == [(word.upper(),)] * 2
    lines.close()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_an_exception_in_the_shard_is_raised_by_the_driver_and_the_line_stays_up(lines):
    serve_line(lines.address(0), lines.authkey, echo_or_raise)
    lines.connect(0)
    lines.send(0, pack("boom"))
    with pytest.raises(ValueError, match="the shard refused: boom"):
        lines.receive(0)
    lines.send(0, pack("ok"))
    assert unpack(lines.receive(0)) == ("OK",)


def test_a_caller_without_the_key_is_refused_and_the_folder_is_private(lines):
    called = []
    thread = serve_line(lines.address(0), lines.authkey, lambda m: called.append(m) or m)
    assert stat.S_IMODE(os.stat(lines.folder).st_mode) == 0o700
    with pytest.raises(AuthenticationError):
        Client(lines.address(0), family="AF_UNIX", authkey=os.urandom(32))
    thread.join(timeout=10)
    assert not thread.is_alive() and called == []


def _serve_then_die(address: str, authkey: bytes) -> None:
    serve_line(address, authkey, lambda message: os._exit(1)).join()


def test_a_shard_process_that_dies_shows_as_the_end_of_the_line(lines):
    import multiprocessing
    import time

    process = multiprocessing.get_context("fork").Process(
        target=_serve_then_die, args=(lines.address(0), lines.authkey))
    process.start()
    deadline = time.monotonic() + 30
    while not os.path.exists(lines.address(0)) and time.monotonic() < deadline:
        time.sleep(0.01)
    lines.connect(0)
    lines.send(0, pack("x"))  # the shard's process exits on it
    with pytest.raises((EOFError, OSError)):
        lines.receive(0)
    process.join(timeout=30)
    assert process.exitcode == 1
