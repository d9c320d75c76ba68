"""What the CLI and the API show: ``reader`` reads states and the models in force from
Redis; ``views`` turns them into profiles and summaries (pure functions)."""
