"""rtba's streaming side: settings, schemas, the Redis state store, the Faust app and the CLI."""
