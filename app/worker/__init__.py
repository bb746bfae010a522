"""The streaming worker: Faust agents that repartition user-events by user id and run the pure
engine over the result and timers."""
