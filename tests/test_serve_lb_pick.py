"""The load balancer's pure parts: ``pick``, the rotation's take-out rule, the stats."""

from __future__ import annotations

import collections

import pytest

from skystate.serve.lb import UNKNOWN_CAPACITY, ReadyReplica, ReadySet, capacity, pick
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


def test_a_taken_out_replica_comes_back_only_after_a_check_passes() -> None:
    rotation = Rotation()
    rotation.replace(ReadySet(generation=1, replicas=_replicas(1, 2)))
    rotation.take_out(1, now=100.0)
    rotation.take_out(1, now=100.1)  # requests failing together: one take-out
    assert rotation.excluded() == {1}
    assert rotation.due_checks(now=100.4) == []  # the backoff first
    [due] = rotation.due_checks(now=100.5)
    assert due.replica_id == 1 and rotation.due_checks(now=100.6) == []  # one at a time
    rotation.check_failed(1, now=100.6)  # still refuses: stays out, the wait doubles
    assert rotation.excluded() == {1}
    assert rotation.due_checks(now=101.5) == []
    waits = []
    now = 101.6
    for _ in range(6):
        [due] = rotation.due_checks(now)
        rotation.check_failed(1, now)
        waits.append(rotation.out[1].wait)
        now = rotation.out[1].next_check
    assert waits == [2.0, 4.0, 5.0, 5.0, 5.0, 5.0]  # capped
    assert rotation.excluded() == {1}  # however long it fails, it never comes back
    [due] = rotation.due_checks(now)
    rotation.check_passed(1, now)
    assert rotation.excluded() == set()
    assert {rotation.choose(set()).replica_id for _ in range(2)} == {1, 2}  # type: ignore


def test_a_flapping_replica_waits_longer_each_time() -> None:
    rotation = Rotation()
    rotation.replace(ReadySet(generation=1, replicas=_replicas(1)))
    firsts = []
    now = 0.0
    for _ in range(6):
        rotation.take_out(1, now)
        firsts.append(rotation.out[1].next_check - now)
        now = rotation.out[1].next_check
        rotation.due_checks(now)
        rotation.check_passed(1, now)
        now += 1.0  # fails again a second after coming back
    assert firsts == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    rotation.take_out(1, now + 60)  # long after: the first wait again
    assert rotation.out[1].next_check - (now + 60) == 0.5


def test_a_newer_generation_checks_at_once_and_a_dropped_replica_is_forgotten() -> None:
    rotation = Rotation()
    rotation.replace(ReadySet(generation=1, replicas=_replicas(1, 2)))
    rotation.take_out(1, now=100.0)
    rotation.replace(ReadySet(generation=1, replicas=_replicas(1, 2)))  # same: no change
    assert rotation.due_checks(now=100.1) == []
    rotation.replace(ReadySet(generation=2, replicas=_replicas(1, 2)))  # re-confirmed
    assert [r.replica_id for r in rotation.due_checks(now=100.1)] == [1]
    assert rotation.excluded() == {1}  # re-confirmed is not back: the check decides
    rotation.take_out(2, now=200.0)
    rotation.replace(ReadySet(generation=3, replicas=_replicas(1)))  # 2 dropped: forgotten
    assert 2 not in rotation.out
    rotation.check_passed(2, now=201.0)  # a check that ends after the drop: ignored
    assert 2 not in rotation.out


def test_instance_aware_least_load_weighs_load_by_accelerator_qps() -> None:
    ready = (ReadyReplica(replica_id=1, url="http://a", accelerator="A100:1"),
             ReadyReplica(replica_id=2, url="http://b", accelerator="T4"))
    qps = {"A100:1": 3.0, "T4": 1.0}
    # 2 in flight on a 3-QPS replica (0.67) is less than 1 on a 1-QPS one (1.0)
    assert pick(ready, "instance_aware_least_load", {1: 2, 2: 1}, target_qps=qps) == ready[0]
    assert pick(ready, "least_load", {1: 2, 2: 1}, target_qps=qps) == ready[1]
    assert pick(ready, "instance_aware_least_load", {1: 3, 2: 0}, target_qps=qps) == ready[1]
    # filling both from empty, request by request: in flight ends 3:1
    in_flight: dict[int, int] = {}
    for turn in range(8):
        chosen = pick(ready, "instance_aware_least_load", in_flight, turn=turn,
                      target_qps=qps)
        in_flight[chosen.replica_id] = in_flight.get(chosen.replica_id, 0) + 1  # type: ignore
    assert in_flight == {1: 6, 2: 2}


def test_capacity_matches_accelerator_names_like_skypilot() -> None:
    qps = {"A100:1": 3.0, "H100": 5.0, "L4": 0.0}
    assert capacity("A100:1", qps) == 3.0
    assert capacity("A100", qps) == 3.0  # the name matches A100:N
    assert capacity("a100:8", qps) == 3.0  # no A100:8: the name
    assert capacity("H100:8", qps) == 5.0
    assert capacity("L4", qps) == UNKNOWN_CAPACITY  # not positive
    assert capacity("V100", qps) == UNKNOWN_CAPACITY
    assert capacity(None, qps) == UNKNOWN_CAPACITY
    assert capacity("A100", None) == UNKNOWN_CAPACITY


def test_choose_counts_in_flight_and_skips_tried_replicas() -> None:
    rotation = Rotation()
    rotation.replace(ReadySet(generation=1, policy="least_load", replicas=_replicas(1, 2)))
    first = rotation.choose(set())
    second = rotation.choose(set())
    assert {first.replica_id, second.replica_id} == {1, 2}  # type: ignore[union-attr]
    assert rotation.in_flight == {1: 1, 2: 1}
    assert rotation.choose({1, 2}) is None
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
    # the optional fields: written only when given, and an older file still reads
    assert "accelerator" not in (tmp_path / "ready_set.json").read_text()
    weighted = [ReadyReplica(replica_id=1, url="http://a", accelerator="A100:1")]
    write_ready_set(tmp_path, "instance_aware_least_load", weighted, 11, {"A100:1": 2.0})
    ready = parse_ready_set((tmp_path / "ready_set.json").read_text())
    assert ready.target_qps == {"A100:1": 2.0} and ready.replicas == tuple(weighted)
    old = parse_ready_set('{"generation": 1, "replicas": [{"replica_id": 1, "url": "x"}]}')
    assert old.target_qps is None and old.replicas[0].accelerator is None


def test_the_policy_keeps_instance_aware_least_load_and_its_weights() -> None:
    from skystate.serve.policy import policy_of

    config = {"run": "x", "service": {
        "load_balancing_policy": "instance_aware_least_load",
        "replica_policy": {"min_replicas": 1, "max_replicas": 3,
                           "target_qps_per_replica": {"A100:1": 4, "T4": 1.5}}}}
    policy = policy_of(config)
    assert policy.load_balancing == "instance_aware_least_load"
    assert policy.qps_per_accelerator == {"A100:1": 4.0, "T4": 1.5}
    plain = policy_of({"run": "x", "service": {"replicas": 2}})
    assert plain.load_balancing == "least_load" and plain.qps_per_accelerator is None
