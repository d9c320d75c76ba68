"""Live audiences: definitions, and membership as event time flows (docs/audiences.md)."""
