"""The streaming worker: a Faust agent on user-events and timers around the pure engine."""
