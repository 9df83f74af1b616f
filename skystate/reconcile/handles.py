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


class ResourceHandle:
    """SkyPilot's ``backends.ResourceHandle``: how to reach a launched cluster."""

    def __init__(self, cluster_name: str, provider: str, nodes: list[Record],
                 launched_resources: Record | None, launched_nodes: int) -> None:
        self.cluster_name = cluster_name
        self.cluster_name_on_cloud = cluster_name
        self.provider = provider
        self.nodes = nodes
        self.launched_resources = launched_resources
        self.launched_nodes = launched_nodes

    @property
    def head_ip(self) -> str | None:
        return self.nodes[0].get("ip") if self.nodes else None

    @property
    def stable_internal_external_ips(self) -> list[tuple[str, str]]:
        return [(n.get("ip", ""), n.get("ip", "")) for n in self.nodes]

    @classmethod
    def from_records(cls, record: Record, nodes: list[Record]) -> ResourceHandle:
        return cls(record["name"], record.get("provider") or "local",
                   [_node_fields(n) for n in nodes], record.get("offer"),
                   int(record.get("num_nodes", len(nodes) or 1)))

    def to_dict(self) -> Record:
        return {"cluster_name": self.cluster_name, "provider": self.provider,
                "nodes": self.nodes, "launched_resources": self.launched_resources,
                "launched_nodes": self.launched_nodes}

    def __repr__(self) -> str:
        return (f"ResourceHandle(cluster_name={self.cluster_name!r}, "
                f"provider={self.provider!r}, head_ip={self.head_ip!r}, "
                f"launched_nodes={self.launched_nodes})")
