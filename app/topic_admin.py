"""Creates the topics the contracts in `topics/` describe, brings existing ones' configs in line
with them, and says where their partitions differ.

An existing topic's partitions are never changed: that moves keys between partitions and would
break the co-partitioning of user-events-by-user and timers, so it stays an operator's decision.
Its configs (retention, accepted timestamps) are safe to change and are set to the contract's,
keeping any other override an operator set."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.config import Settings
from app.topics import TopicContract, load_contracts


@dataclass
class TopicReport:
    topic: str
    created: bool = False
    differences: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.created:
            return f"{self.topic}: created"
        lines = []
        if self.updated:
            lines.append(f"{self.topic}: config set to its contract: " + "; ".join(self.updated))
        if self.differences:
            lines.append(f"{self.topic}: DIFFERS from its contract: " + "; ".join(self.differences))
        return "\n".join(lines) or f"{self.topic}: matches its contract"


TOPIC_ALREADY_EXISTS = 36  # another `apply` got there first: not a failure
TOPIC_OVERRIDE = 1  # DescribeConfigs' source of a config set on the topic itself


async def apply_topics(
    settings: Settings, contracts: list[TopicContract] | None = None
) -> list[TopicReport]:
    contracts = contracts if contracts is not None else load_contracts()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [c for c in contracts if settings.topic(c.name) not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        settings.topic(c.name),
                        num_partitions=c.partitions,
                        replication_factor=settings.kafka_replication_factor,
                        topic_configs=dict(c.config),
                    )
                    for c in missing
                ]
            )
            failures = [
                (topic, code, message)
                for topic, code, message in response.topic_errors
                if code not in (0, TOPIC_ALREADY_EXISTS)
            ]
            if failures:
                raise RuntimeError(f"Kafka refused to create topics: {failures}")
        reports = [TopicReport(settings.topic(c.name), created=True) for c in missing]
        present = [c for c in contracts if c not in missing]
        for contract in present:
            reports.append(await _compare(admin, settings.topic(contract.name), contract))
        return sorted(reports, key=lambda r: r.topic)
    finally:
        await admin.close()


async def _compare(admin: AIOKafkaAdminClient, topic: str, contract: TopicContract) -> TopicReport:
    report = TopicReport(topic)
    (description,) = await admin.describe_topics([topic])
    partitions = len(description["partitions"])
    if partitions != contract.partitions:
        report.differences.append(f"{partitions} partitions, contract says {contract.partitions}")
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = [entry for result in response.resources for entry in result[4]]
    actual = {entry[0]: entry[1] for entry in entries}
    stale = {key: wanted for key, wanted in contract.config.items() if actual.get(key) != wanted}
    if stale:
        # AlterConfigs replaces a topic's overrides as a whole: the operator's others are kept.
        overrides = {entry[0]: entry[1] for entry in entries if entry[3] == TOPIC_OVERRIDE}
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {**overrides, **stale})
        (altered,) = await admin.alter_configs([resource])
        errors = [r for r in altered.resources if r[0] != 0]
        if errors:
            raise RuntimeError(f"Kafka refused to set {topic}'s configs: {errors}")
        report.updated = [
            f"{key}={wanted} (was {actual.get(key)})" for key, wanted in stale.items()
        ]
    return report
