"""The deployment's salt for API key fingerprints: random, made once, kept in Redis.

A bare hash of the key in Redis key names would let anyone holding a candidate key confirm
it from a key listing, a log line or a backup of another deployment. Keyed by a random
salt of this deployment, a fingerprint means nothing without that salt.
"""

from __future__ import annotations

import secrets

import redis

from worker.store.keys import KEY_SALT

SALT_BYTES = 32


def deployment_salt(client: redis.Redis) -> bytes:
    """The salt every worker of this deployment keys fingerprints with. The first worker to
    ask makes it (SET NX); every worker then reads the one that was kept, so all agree."""
    client.set(KEY_SALT, secrets.token_hex(SALT_BYTES), nx=True)
    kept = client.get(KEY_SALT)
    if isinstance(kept, bytes):  # a client without decode_responses
        kept = kept.decode()
    return bytes.fromhex(str(kept))
