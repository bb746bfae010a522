"""The wire contract the worker and the sender share: the forms a send takes from the engine's
send effect to a dispatch record on the `send` topic, and their encodings."""
