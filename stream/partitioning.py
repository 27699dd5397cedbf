"""Kafka's default partition of keyed records, for a micro-batch of keys at once.

A producer sends a keyed record to partition `(murmur2(key) & 0x7fffffff) % partitions`
(the Java client's and aiokafka's DefaultPartitioner). aiokafka's murmur2 is pure
Python, about 5 us for a 32-byte pseudonym, and a backlog brings many users the worker
has not seen yet; here the keys of a batch are hashed together as numpy columns, all
keys of one length in one pass (tested equal to aiokafka's on every tail length).

    partitions = default_partitions([b"user-1", b"user-2"], count=4)   # -> [p1, p2]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SEED = 0x9747B28C
_M = np.uint32(0x5BD1E995)


def murmur2(keys: Sequence[bytes]) -> np.ndarray:
    """Kafka's murmur2 of each key, as uint32."""
    out = np.empty(len(keys), dtype=np.uint32)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    for length, positions in by_length.items():
        data = np.frombuffer(b"".join(keys[i] for i in positions), dtype=np.uint8)
        out[positions] = _murmur2_rows(data.reshape(len(positions), length), length)
    return out


def _murmur2_rows(data: np.ndarray, length: int) -> np.ndarray:
    """murmur2 of each row of `data` (n keys of `length` bytes); uint32 arithmetic wraps
    as Java's int does."""
    h = np.full(len(data), (_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
    whole = length // 4 * 4
    if whole:
        words = np.ascontiguousarray(data[:, :whole]).view("<u4")  # 4 bytes, little-endian
        for j in range(whole // 4):
            k = words[:, j] * _M
            k ^= k >> np.uint32(24)
            k *= _M
            h *= _M
            h ^= k
    extra = length - whole
    if extra >= 3:
        h ^= data[:, whole + 2].astype(np.uint32) << np.uint32(16)
    if extra >= 2:
        h ^= data[:, whole + 1].astype(np.uint32) << np.uint32(8)
    if extra >= 1:
        h ^= data[:, whole].astype(np.uint32)
        h *= _M
    h ^= h >> np.uint32(13)
    h *= _M
    h ^= h >> np.uint32(15)
    return h


def default_partitions(keys: Sequence[bytes], count: int) -> list[int]:
    """The partition of each key among `count`, as Kafka's default partitioner picks it."""
    return ((murmur2(keys) & np.uint32(0x7FFFFFFF)) % np.uint32(count)).tolist()
