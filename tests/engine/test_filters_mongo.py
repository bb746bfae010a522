"""A condition's Python predicate and its MongoDB filter select the same users: random documents
and random conditions, the filter evaluated by the real MongoDB-wire server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pymongo
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.engine import conditions as c
from app.engine.definitions import NO_ACTION
from app.engine.loader import load_journey_text

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
ENTERED_AT = NOW - timedelta(days=1)  # the entry `since_entry` conditions are evaluated in
moments = st.integers(-5 * 24 * 60, 24 * 60).map(lambda m: NOW + timedelta(minutes=m))
# Strings for contains and prefix, with characters a regular expression would take as syntax.
TEXTS = ["pro", "pro-team", "professional", "free", "a.b*c", "(x)+[y]", "p^q$", "back\\slash"]
scalars = st.one_of(
    st.sampled_from(["free", "pro", "teacher", "", *TEXTS]),
    st.integers(-3, 3),
    st.sampled_from([0.5, 2.5]),
    st.booleans(),
    st.none(),
    moments,
)
attribute_values = st.one_of(
    scalars, st.lists(st.sampled_from(["free", "pro", "pro-team", 1]), max_size=3)
)


@st.composite
def documents(draw: st.DrawFn) -> dict:
    events = draw(
        st.dictionaries(
            st.sampled_from(["signed_up", "added_class"]),
            st.builds(
                lambda n, t: {"count": n, "first_at": t, "last_at": t}, st.integers(1, 3), moments
            ),
        )
    )
    return {
        "attributes": draw(
            st.dictionaries(st.sampled_from(["plan", "score", "since"]), attribute_values)
        ),
        "changed": draw(st.dictionaries(st.sampled_from(["plan", "score"]), moments)),
        # An event's properties, as property filters read them.
        "properties": draw(
            st.dictionaries(st.sampled_from(["sku", "quantity", "tags"]), attribute_values)
        ),
        "subscriptions": draw(st.dictionaries(st.sampled_from(["email", "push"]), st.booleans())),
        "topics": draw(st.dictionaries(st.sampled_from(["news", "tips"]), st.booleans())),
        "events": events,
        "received": draw(
            st.dictionaries(
                st.sampled_from(["welcome"]),
                st.builds(lambda n, t: {"count": n, "last_at": t}, st.integers(1, 2), moments),
            )
        ),
    }


def property_filters() -> st.SearchStrategy[c.Condition]:
    """Event property filters with every operator: plain values (equals) and one-key
    operator mappings."""
    operand = st.one_of(
        st.tuples(
            st.sampled_from(["equals", "not_equals", "gt", "gte", "lt", "lte"]),
            scalars.filter(lambda v: v is not None),
        ),
        st.tuples(st.just("in"), st.lists(scalars, min_size=1, max_size=3)),
        st.tuples(st.just("exists"), st.booleans()),
        st.tuples(st.sampled_from(["contains", "prefix"]), st.sampled_from(["", "p", *TEXTS])),
    ).map(lambda pair: {pair[0]: pair[1]})
    return st.dictionaries(
        st.sampled_from(["sku", "quantity", "tags"]),
        st.one_of(scalars, operand),
        min_size=1,
        max_size=2,
    ).map(c.property_filter)


def leaf() -> st.SearchStrategy[c.Condition]:
    fields = st.sampled_from(["attributes.plan", "attributes.score", "attributes.since"])
    ops = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"])
    return st.one_of(
        st.builds(c.TextMatch, fields, st.sampled_from(["", "p", "pro", *TEXTS]), st.booleans()),
        st.builds(
            c.SinceEntry,
            st.sampled_from(["changed.plan", "changed.score", "events.added_class.last_at"]),
        ),
        property_filters(),
        st.builds(c.FieldCompare, fields, ops, scalars.filter(lambda v: v is not None)),
        st.builds(c.FieldCompare, fields, st.just("$eq"), st.none()),
        st.builds(
            c.FieldCompare, fields, st.just("$in"), st.lists(scalars, min_size=1, max_size=3)
        ),
        st.builds(c.FieldCompare, fields, st.just("$exists"), st.booleans()),
        st.builds(
            c.event_count_at_least, st.sampled_from(["signed_up", "added_class"]), st.integers(1, 3)
        ),
        st.builds(c.event_never, st.sampled_from(["signed_up", "added_class"])),
        st.builds(
            c.TimeSince,
            st.sampled_from(["attributes.since", "events.signed_up.last_at"]),
            st.integers(0, 72).map(lambda h: timedelta(hours=h)),
        ),
        st.builds(
            c.Within,
            st.sampled_from(["events.added_class.last_at", "received.welcome.last_at"]),
            st.integers(0, 72).map(lambda h: timedelta(hours=h)),
        ),
        st.builds(c.received, st.just("welcome")),
        st.builds(c.subscribed, st.sampled_from(["email", "push"])),
        st.builds(c.subscribed_topic, st.sampled_from(["news", "tips"])),
    )


conditions = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.builds(lambda parts: c.All(tuple(parts)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: c.Any_(tuple(parts)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(c.Not, inner),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def collection(servers: Settings):
    client = pymongo.MongoClient(servers.mongo_url, tz_aware=True)
    name = f"test_filters_{uuid.uuid4().hex[:8]}"
    yield client[name]["users"]
    client.drop_database(name)
    client.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(documents(), min_size=1, max_size=8), st.lists(conditions, min_size=1, max_size=4))
def test_predicate_and_mongo_filter_select_the_same_users(collection, docs, conds) -> None:
    collection.delete_many({})
    collection.insert_many([{"_id": f"u{i}", **doc} for i, doc in enumerate(docs)])
    stored = {d["_id"]: d for d in collection.find({})}  # as the server keeps them
    for condition in conds:
        by_predicate = {uid for uid, doc in stored.items() if condition.test(doc, NOW, ENTERED_AT)}
        by_filter = {
            d["_id"] for d in collection.find(condition.mongo(NOW, ENTERED_AT), {"_id": 1})
        }
        assert by_filter == by_predicate, condition.describe()


def test_decision_tree_leaf_is_the_or_of_its_paths(collection) -> None:
    """The ClassDojo DecisionTree: "which users sit at leaf X now" is one query."""
    from app.engine.decision_tree import leaf_conditions

    journey = load_journey_text(
        "id: t\nversion: 1\nentry: {event: signed_up}\nsteps:\n"
        "  root: {type: branch, if: {attribute: plan, equals: pro}, yes: pro_tip, no: has_class}\n"
        "  has_class: {type: branch, if: {event: added_class, performed_at_least: 1},"
        " yes: pro_tip, no: no_action}\n"
        "  pro_tip: {type: message, channel: email, template: tip}\n"
    )
    leaves = leaf_conditions(journey, "root")
    assert set(leaves) == {"pro_tip", NO_ACTION}
    collection.delete_many({})
    collection.insert_many(
        [
            {"_id": "pro", "attributes": {"plan": "pro"}, "events": {}},
            {
                "_id": "free-with-class",
                "attributes": {"plan": "free"},
                "events": {"added_class": {"count": 1}},
            },
            {"_id": "free", "attributes": {"plan": "free"}, "events": {}},
        ]
    )
    at_tip = {d["_id"] for d in collection.find(leaves["pro_tip"].mongo(NOW))}
    at_nothing = {d["_id"] for d in collection.find(leaves[NO_ACTION].mongo(NOW))}
    assert at_tip == {"pro", "free-with-class"} and at_nothing == {"free"}
