"""Event producers (kafka-python): the synthetic generator and the CSV replayer."""
