"""Authoring journeys without a server: the `validate`, `graph` and `simulate` commands and the
reading of journey, rules and event files. The engine itself reads no files (see app/engine)."""
