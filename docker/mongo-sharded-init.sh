#!/bin/sh
# The scale profile's MongoDB: initiates the config server's and each shard's replica set, adds
# the shards to the cluster through mongos and shards the database by docker/mongo-shard.js
# (printed by `journeys shard-commands`). Every step may run again: it changes nothing then.
set -eu

initiate() {  # host, replica set, extra options of rs.initiate
  until mongosh --quiet --host "$1" --eval "db.adminCommand({ping: 1})" >/dev/null; do sleep 1; done
  mongosh --quiet --host "$1" --eval "
    try { rs.status() } catch (e) {
      rs.initiate({_id: '$2', $3 members: [{_id: 0, host: '$1:27017'}]})
    }"
  until mongosh --quiet --host "$1" --eval "quit(db.hello().isWritablePrimary ? 0 : 1)"; do
    sleep 1
  done
}

initiate mongo-config config "configsvr: true,"
initiate mongo-shard-a shard-a ""
initiate mongo-shard-b shard-b ""
until mongosh --quiet --host mongos --eval "db.adminCommand({ping: 1})" >/dev/null; do sleep 1; done
mongosh --quiet --host mongos --eval "
  sh.addShard('shard-a/mongo-shard-a:27017');
  sh.addShard('shard-b/mongo-shard-b:27017');"
mongosh --quiet --host mongos /docker/mongo-shard.js
