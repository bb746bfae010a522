"""MongoDB persistence: user state (the source of truth), deployed journeys, deliveries."""
