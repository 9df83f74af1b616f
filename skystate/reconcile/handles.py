"""Turn stored records back into provider observations, and observations into records."""

from __future__ import annotations

from typing import Any

from skystate.providers.base import ClusterObservation, NodeInfo, Offer

Record = dict[str, Any]


def observation_of(record: Record, nodes: list[Record]) -> ClusterObservation:
    return ClusterObservation(
        name=record["name"],
        owner=record.get("owner"),
        provider=record.get("provider") or "local",
        nodes=tuple(NodeInfo.from_dict(_node_fields(n)) for n in nodes),
        offer=Offer.from_dict(record["offer"]) if record.get("offer") else None,
        tags=dict(record.get("tags") or {}),
        stopped_by_autostop=bool(record.get("stopped_by_autostop")),
    )


def node_records(observation: ClusterObservation) -> list[Record]:
    return [node.to_dict() for node in observation.nodes]


def _node_fields(node: Record) -> Record:
    return {k: v for k, v in node.items() if k != "cluster"}
