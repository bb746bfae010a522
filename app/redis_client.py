"""The Redis client of every process (worker, sender, API), made in one place.

`REDIS_URL` names one Redis (`redis://`, `rediss://`, `unix://`) or a Redis Cluster by some of its
nodes: `redis+cluster://host:port,host:port/` (`rediss+cluster://` for TLS, `user:password@`
before the nodes for auth). A cluster client finds the other nodes and the slot map itself.
Whichever it is, the code above sees the same commands: every multi-key command and script
touches one slot (the hash tags of app/keyspace.py), and pipelines are non-transactional."""

from __future__ import annotations

from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster

from app.config import Settings
from app.retry import retry_transient

RedisClient = aioredis.Redis | RedisCluster
RedisPipeline = Pipeline | ClusterPipeline
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES


def applies_in_order(pipeline: RedisPipeline) -> bool:
    """Whether a pipeline's commands take effect in the order they were queued, so one that took
    effect means every one before it did: on one Redis they go down one connection and run in
    order; a cluster pipeline sends each node its share at once, so a command may take effect on
    one node while an earlier one fails on another."""
    return not isinstance(pipeline, ClusterPipeline)


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The (host, port) startup nodes a cluster URL names."""
    return [(node.host, node.port) for node in _cluster_url(url)[0]]


async def open_redis(settings: Settings) -> RedisClient:
    """A client ready for concurrent use: a cluster client learns the slot map here, once. Left
    to its first commands, concurrent ones each start that and tear down each other's fresh
    connections (redis-py 8.1: AttributeError on `_writer`)."""
    client = new_redis(settings)
    await retry_transient(client.initialize, what="connecting to Redis")
    return client


def new_redis(settings: Settings) -> RedisClient:
    if not is_cluster_url(settings.redis_url):
        return aioredis.from_url(settings.redis_url)
    nodes, username, password, tls = _cluster_url(settings.redis_url)
    return RedisCluster(
        startup_nodes=nodes, username=username, password=password, ssl=tls, decode_responses=False
    )


def _cluster_url(url: str) -> tuple[list[ClusterNode], str | None, str | None, bool]:
    scheme, _, rest = url.partition("://")
    where, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"REDIS_URL {scheme}://...: a Redis Cluster has only database 0")
    credentials, _, hosts = where.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes: list[ClusterNode] = []
    for node in filter(None, hosts.split(",")):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                f"REDIS_URL {scheme}://...: found node {node!r}, expected host:port "
                "(redis+cluster://host:port,host:port/)"
            )
        nodes.append(ClusterNode(host, int(port)))
    if not nodes:
        raise ValueError(f"REDIS_URL {scheme}://...: expected at least one host:port")
    return (
        nodes,
        unquote(username) or None,
        unquote(password) or None,
        scheme == "rediss+cluster",
    )
