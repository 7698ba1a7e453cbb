"""The command line's small courtesies: --version, no abbreviations, counts as people write them."""

from __future__ import annotations

import argparse

import pytest

from xpay.cli import count, main


def test_version_names_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("xpay 0.")


@pytest.mark.parametrize("argv", [["run", "--shard", "2"], ["run", "--user", "100"],
                                  ["replay", "--account", "a", "--workload", "w", "--out", "o"]])
def test_abbreviated_flags_are_refused(argv):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2


@pytest.mark.parametrize("text,value", [("100000", 100_000), ("100_000", 100_000), ("100k", 100_000),
                                        ("1.5M", 1_500_000), ("2G", 2_000_000_000), ("1.25k", 1_250)])
def test_counts_as_people_write_them(text, value):
    assert count(text) == value


@pytest.mark.parametrize("text", ["1.2345k", "abc", "10x", "nan", "inf", ""])
def test_a_count_that_is_not_a_whole_number_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        count(text)
