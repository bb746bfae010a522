"""The sender: delivers dispatch records from the `send` topic through providers, exactly once."""
