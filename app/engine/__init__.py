"""The journey engine: pure functions of (user state, input, now). Nothing here talks to Kafka,
MongoDB, Redis or the network; the workers and the simulator are the shells around it."""

from app.engine.definitions import Journey, Rules, VersionedRules
from app.engine.effects import Analytics, CancelTimer, Effect, ScheduleTimer, Send, Transition
from app.engine.engine import JourneyEngine, dispatch_id, zone_named
from app.engine.inputs import (
    EngineInput,
    EventTimeError,
    EventTimePolicy,
    ScheduledEntry,
    TimerFired,
    UserEvent,
    input_order,
)
from app.engine.lifecycle import Deployment, VersionMissing
from app.engine.loader import (
    JourneyError,
    load_definition_text,
    load_journey_text,
    load_rules_text,
    load_simulation_rules_text,
)
from app.engine.state import PendingTimer, UserState

__all__ = [
    "Analytics",
    "CancelTimer",
    "Deployment",
    "Effect",
    "EngineInput",
    "EventTimeError",
    "EventTimePolicy",
    "Journey",
    "JourneyEngine",
    "JourneyError",
    "PendingTimer",
    "Rules",
    "ScheduleTimer",
    "ScheduledEntry",
    "Send",
    "TimerFired",
    "Transition",
    "UserEvent",
    "UserState",
    "VersionMissing",
    "VersionedRules",
    "dispatch_id",
    "input_order",
    "load_definition_text",
    "load_journey_text",
    "load_rules_text",
    "load_simulation_rules_text",
    "zone_named",
]
