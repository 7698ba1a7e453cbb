"""Call lines (actors.transport): a driver's authenticated local connection to each shard."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time

import pytest
from multiprocessing.connection import AuthenticationError, Client

from actors.transport import CallLines, LineLost, pack, serve_line, unpack


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


def serving(handler, threads: list | None = None):
    """A listen(address, key) for CallLines.open that serves in a thread of this process."""
    def listen(address: str, key: bytes) -> None:
        thread = serve_line(address, key, handler)
        if threads is not None:
            threads.append(thread)
    return listen


def test_calls_and_answers_go_both_ways_and_the_line_ends_when_the_driver_hangs_up(lines):
    threads = []
    for s in range(2):
        lines.open(s, serving(echo_or_raise, threads))
    for word in ("a", "bb", "x" * 100_000):
        for s in range(2):
            lines.send(s, pack(word))
        assert [unpack(lines.receive(s)) for s in range(2)] == [(word.upper(),)] * 2
    lines.close()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_an_exception_in_the_shard_is_raised_by_the_driver_and_the_line_stays_up(lines):
    lines.open(0, serving(echo_or_raise))
    lines.send(0, pack("boom"))
    with pytest.raises(ValueError, match="the shard refused: boom"):
        lines.receive(0)
    lines.send(0, pack("ok"))
    assert unpack(lines.receive(0)) == ("OK",)


def test_a_caller_without_the_key_is_refused_and_the_folder_is_private(lines):
    called, threads = [], []
    address = os.path.join(lines.folder, "probe")
    threads.append(serve_line(address, lines.authkey, lambda m: called.append(m) or m))
    assert stat.S_IMODE(os.stat(lines.folder).st_mode) == 0o700
    with pytest.raises(AuthenticationError):
        Client(address, family="AF_UNIX", authkey=os.urandom(32))
    threads[0].join(timeout=10)
    assert not threads[0].is_alive() and called == []


def _serve_then_die(address: str, authkey: bytes) -> None:
    serve_line(address, authkey, lambda message: os._exit(1)).join()


def test_a_shard_process_that_dies_shows_as_a_lost_line_and_a_new_one_can_be_opened(lines):
    process = None

    def listen_in_a_process(address: str, key: bytes) -> None:
        nonlocal process
        process = multiprocessing.get_context("fork").Process(target=_serve_then_die, args=(address, key))
        process.start()
        deadline = time.monotonic() + 30
        while not os.path.exists(address) and time.monotonic() < deadline:
            time.sleep(0.01)

    lines.open(0, listen_in_a_process)
    lines.send(0, pack("x"))  # the shard's process exits on it
    with pytest.raises(LineLost, match="hung up"):
        lines.receive(0)
    assert not lines.up(0)
    process.join(timeout=30)
    assert process.exitcode == 1
    lines.open(0, serving(echo_or_raise))  # a restarted shard gets a new line
    lines.send(0, pack("again"))
    assert unpack(lines.receive(0)) == ("AGAIN",)
