"""Kafka plumbing shared by the worker, the sender and the API: producer, dead letters, records."""
