// Shards a Journeys database by the keys in app/store/schema.py
// (printed by `journeys shard-commands`; run with mongosh against a mongos).
sh.enableSharding("journeys");
const journeysDb = db.getSiblingDB("journeys");
journeysDb.getCollection("users").createIndex({"_id": "hashed"});
sh.shardCollection("journeys.users", {"_id": "hashed"});
journeysDb.getCollection("timeline").createIndex({"user_id": "hashed"});
sh.shardCollection("journeys.timeline", {"user_id": "hashed"});
journeysDb.getCollection("deliveries").createIndex({"_id": "hashed"});
sh.shardCollection("journeys.deliveries", {"_id": "hashed"});
journeysDb.getCollection("push_tickets").createIndex({"_id": "hashed"});
sh.shardCollection("journeys.push_tickets", {"_id": "hashed"});
journeysDb.getCollection("suppressions").createIndex({"_id": "hashed"});
sh.shardCollection("journeys.suppressions", {"_id": "hashed"});
journeysDb.getCollection("topic_opt_outs").createIndex({"_id": "hashed"});
sh.shardCollection("journeys.topic_opt_outs", {"_id": "hashed"});
journeysDb.getCollection("journey_figures").createIndex({"journey_id": "hashed"});
sh.shardCollection("journeys.journey_figures", {"journey_id": "hashed"});
// journeys: unsharded (a few documents, on the primary shard)
// rules: unsharded (a few documents, on the primary shard)
// schedule_runs: unsharded (a few documents, on the primary shard)
// time_zones: unsharded (a few documents, on the primary shard)
