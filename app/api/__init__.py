"""The operator surface: journeys, events, flow pictures, timelines, metrics over HTTP."""
