"""The load balancer's pure parts: ``pick``, the rotation's take-out rule, the stats."""

from __future__ import annotations

import collections

import pytest

from skystate.serve.lb import ReadyReplica, ReadySet, pick
from skystate.serve.lb_process import write_ready_set
from skystate.serve.lb_state import Rotation, Stats, parse_ready_set


def _replicas(*ids: int) -> tuple[ReadyReplica, ...]:
    return tuple(ReadyReplica(replica_id=i, url=f"http://127.0.0.1:{9000 + i}") for i in ids)


def test_round_robin_cycles_in_ready_set_order() -> None:
    ready = _replicas(1, 2, 3)
    picked = [pick(ready, "round_robin", {}, turn=t) for t in range(6)]
    assert [r.replica_id for r in picked if r] == [1, 2, 3, 1, 2, 3]


def test_round_robin_ignores_load() -> None:
    ready = _replicas(1, 2)
    assert pick(ready, "round_robin", {1: 50}, turn=0) == ready[0]


def test_excluded_replicas_are_skipped_and_none_left_is_none() -> None:
    ready = _replicas(1, 2, 3)
    assert {pick(ready, "round_robin", {}, turn=t, excluded={2}).replica_id  # type: ignore
            for t in range(4)} == {1, 3}
    assert pick(ready, "least_load", {}, excluded={1, 2, 3}) is None
    assert pick((), "round_robin", {}) is None


def test_least_load_takes_the_fewest_in_flight() -> None:
    ready = _replicas(1, 2, 3)
    for turn in range(5):
        assert pick(ready, "least_load", {1: 3, 2: 1, 3: 2}, turn=turn) == ready[1]


def test_least_load_shares_ties_by_turn() -> None:
    ready = _replicas(1, 2, 3)
    counts = collections.Counter(
        pick(ready, "least_load", {2: 1}, turn=t).replica_id for t in range(10))  # type: ignore
    assert counts == {1: 5, 3: 5}


def test_unknown_policy_is_round_robin() -> None:
    ready = _replicas(1, 2)
    assert [pick(ready, "random", {9: 1}, turn=t) for t in (0, 1)] == list(ready)


def test_a_failed_replica_rejoins_only_in_a_newer_generation_after_a_second() -> None:
    rotation = Rotation()
    rotation.replace(ReadySet(generation=1, replicas=_replicas(1, 2)))
    rotation.take_out(1, now=100.0)
    assert rotation.excluded(now=500.0) == {1}  # same generation: out however long
    rotation.replace(ReadySet(generation=2, replicas=_replicas(1, 2)))
    assert rotation.excluded(now=100.5) == {1}  # newer generation, but too soon
    assert rotation.excluded(now=101.0) == set()
    rotation.take_out(2, now=200.0)
    rotation.replace(ReadySet(generation=3, replicas=_replicas(1)))  # 2 dropped: forgotten
    assert rotation.out == {}


def test_choose_counts_in_flight_and_skips_tried_replicas() -> None:
    rotation = Rotation()
    rotation.replace(ReadySet(generation=1, policy="least_load", replicas=_replicas(1, 2)))
    first = rotation.choose(set(), now=0.0)
    second = rotation.choose(set(), now=0.0)
    assert {first.replica_id, second.replica_id} == {1, 2}  # type: ignore[union-attr]
    assert rotation.in_flight == {1: 1, 2: 1}
    assert rotation.choose({1, 2}, now=0.0) is None
    rotation.release(1)
    rotation.release(2)
    assert rotation.in_flight == {}


def test_stats_recent_is_per_second_and_keeps_one_minute() -> None:
    stats = Stats()
    for now in (1000.1, 1000.9, 1001.5, 1070.0):
        stats.request(now)
    stats.sent(1)
    stats.failure(2, "ConnectError", 1000.2)
    doc = stats.snapshot(pid=7, port=80, now=1070.0, in_flight={1: 2})
    assert doc["requests_total"] == 4
    assert doc["recent"] == [[1070, 1]]  # 1000 and 1001 are more than 60 s old
    assert doc["per_replica"] == {"1": {"requests": 1, "failures": 0, "in_flight": 2},
                                  "2": {"requests": 0, "failures": 1, "in_flight": 0}}
    assert doc["failed"] == [{"replica_id": 2, "at": 1000.2, "error": "ConnectError"}]
    assert Stats().snapshot(pid=1, port=1, now=5.0, in_flight={})["recent"] == []


def test_ready_set_file_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_ready_set(tmp_path, "least_load", list(_replicas(4, 5)), generation=9)
    ready = parse_ready_set((tmp_path / "ready_set.json").read_text())
    assert ready == ReadySet(generation=9, policy="least_load", replicas=_replicas(4, 5))
    assert (tmp_path / "ready_set.json").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="unknown load balancing policy"):
        write_ready_set(tmp_path, "fastest", [], generation=10)
    with pytest.raises(ValueError):
        parse_ready_set('{"generation": 1, "replicas": [{"url": "x"}]}')
