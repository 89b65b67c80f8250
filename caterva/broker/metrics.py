"""The embedded broker's /metrics (``caterva bro --metrics HOST:PORT``): clients connected,
MQTT messages (PUBLISH packets) and bytes in and out, retained messages.

An amqtt plugin counts packets as they pass; amqtt runs a task per plugin and packet, so the
plugin is loaded only with --metrics. Mosquitto counts the same on its own $SYS topics
(README: Operations), read by an exporter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from amqtt.broker import Broker, BrokerContext
from amqtt.mqtt.packet import PUBLISH
from amqtt.plugins.base import BasePlugin
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from caterva.service import metrics


class BrokerCounts(BasePlugin[BrokerContext]):
    """Counts what passes through the broker (plain int increments, read at scrape time)."""

    @dataclass
    class Config:
        pass

    def __init__(self, context: BrokerContext) -> None:
        super().__init__(context)
        self.clients = 0
        self.received = [0, 0]  # PUBLISH packets, bytes of every packet
        self.sent = [0, 0]

    async def on_mqtt_packet_received(self, *, packet, session=None) -> None:
        self._count(self.received, packet)

    async def on_mqtt_packet_sent(self, *, packet, session=None) -> None:
        self._count(self.sent, packet)

    @staticmethod
    def _count(counts: list[int], packet) -> None:
        if packet is not None:
            counts[0] += packet.fixed_header.packet_type == PUBLISH
            counts[1] += packet.bytes_length

    async def on_broker_client_connected(self, client_id: str, client_session) -> None:
        self.clients += 1

    async def on_broker_client_disconnected(self, client_id: str, client_session) -> None:
        self.clients -= 1


PLUGIN = f"{__name__}.{BrokerCounts.__name__}"


class BrokerCollector(Collector):
    def __init__(self, counts: BrokerCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        yield GaugeMetricFamily(
            "caterva_broker_clients_connected", "MQTT clients connected", value=counts.clients
        )
        yield GaugeMetricFamily(
            "caterva_broker_retained_messages",
            "Topics holding a retained message",
            value=len(counts.context.retained_messages),
        )
        for way, (messages, size) in (("received", counts.received), ("sent", counts.sent)):
            yield CounterMetricFamily(
                f"caterva_broker_messages_{way}", f"MQTT messages (PUBLISH) {way}", value=messages
            )
            yield CounterMetricFamily(
                f"caterva_broker_{way}_bytes", f"Bytes of MQTT packets {way}", value=size
            )


def registry(broker: Broker) -> CollectorRegistry:
    counts = broker.plugins_manager.get_plugin(BrokerCounts.__name__)
    return metrics.registry("broker", [BrokerCollector(counts)])
