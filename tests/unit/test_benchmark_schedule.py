"""When the benchmark takes its samples: alone, or caterva's and Caterva2's alternately (the
scenarios here are plain functions; the real ones run with ``python -m benchmarks.run``)."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks import report, schedule
from benchmarks.result import Result


def _scenario(name, steps, samples=3, seconds=1.0):
    def step(what, value=None):
        return lambda: (steps.append(f"{name} {what}"), value)[1]

    return schedule.Scenario(
        Result(name, name),
        step("sample", seconds),
        samples,
        setup=step("setup"),
        prepare=step("prepare"),
        verify=step("verify", True),
    )


def test_alone_prepares_once_sets_up_each_sample_and_verifies_once():
    steps = []
    result = schedule.alone(_scenario("a", steps, samples=2))
    assert steps == ["a prepare", "a setup", "a sample", "a setup", "a sample", "a verify"]
    assert result.times == [1.0, 1.0] and result.verified is True


def test_pair_alternates_the_samples_of_both_sides():
    steps = []
    ours, theirs = _scenario("caterva", steps, 2, 0.5), _scenario("Caterva2", steps, 2, 4.0)
    schedule.pair(ours, theirs, dict)
    assert steps == [
        "caterva prepare",
        "Caterva2 prepare",
        *["caterva setup", "caterva sample", "Caterva2 setup", "Caterva2 sample"] * 2,
        "caterva verify",
        "Caterva2 verify",
    ]
    assert ours.result.times == [0.5, 0.5] and theirs.result.times == [4.0, 4.0]
    assert ours.result.verified and theirs.result.verified


def test_pair_refuses_sides_of_different_sample_counts():
    with pytest.raises(ValueError):
        schedule.pair(_scenario("a", [], 2), _scenario("b", [], 3), dict)


def test_pair_charges_cpu_to_the_side_whose_sample_ran():
    def busy():  # burns CPU in this process, which stands for a service of caterva
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        return 0.05

    ours = schedule.Scenario(Result("x", "x"), busy, 2)
    theirs = schedule.Scenario(Result("x", "x"), lambda: 0.01, 2)
    schedule.pair(ours, theirs, lambda: {"caterva sub": os.getpid()})
    assert ours.result.cpu["caterva sub"] >= 0.08  # clock ticks: 10 ms
    assert theirs.result.cpu["caterva sub"] < 0.03
    assert "caterva sub" in schedule.cpu_text(ours.result)


def test_a_process_restarted_during_a_sample_is_not_charged():
    calls = iter([os.getpid(), os.getppid(), os.getpid(), os.getpid()])  # ours: two processes
    ours = schedule.Scenario(Result("x", "x"), lambda: 0.01, 1)
    theirs = schedule.Scenario(Result("x", "x"), lambda: 0.01, 1)
    schedule.pair(ours, theirs, lambda: {"Caterva2 sub": next(calls)})
    assert ours.result.cpu == {} and list(theirs.result.cpu) == ["Caterva2 sub"]


def test_leads_are_the_ratio_of_medians_and_the_median_of_pair_ratios():
    ours = {"times_s": [1.0, 2.0, 4.0]}
    theirs = {"times_s": [8.0, 2.0, 4.0]}  # pairs: 8x, 1x, 1x
    assert report.leads(ours, theirs) == {"lead": 2.0, "pair_lead": 1.0}
    assert report.leads(ours, {"times_s": [2.0]}) == {"lead": 1.0}  # no pairs
    assert report.leads({}, theirs) == {}
