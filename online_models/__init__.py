"""rtba's domain: pure, picklable models with no Kafka, Redis or asyncio.

Everything here is plain Python over plain values so it can be unit-tested in
microseconds and reused by the stream workers, the CLI and the benchmarks.
"""

from online_models.customer import CustomerState
from online_models.rfm import SEGMENTS, RFMScorer, segment_of

__all__ = ["CustomerState", "RFMScorer", "SEGMENTS", "segment_of"]
