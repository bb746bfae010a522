"""Journeys: customer journeys and lifecycle messaging on Kafka, MongoDB and Redis."""

__version__ = "0.1.0"
