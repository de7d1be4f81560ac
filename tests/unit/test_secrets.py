"""The API key's fingerprint in Redis key names is keyed by a salt of the deployment."""

from __future__ import annotations

import hashlib
import hmac

import redis
from pydantic import SecretStr

from ops.redis_server import RedisServer
from worker.limits.keyhealth import fingerprint
from worker.store.keys import KEY_SALT

KEY = SecretStr("sk-live-guessable")


def test_the_fingerprint_is_no_bare_hash_of_the_key(redis_client: redis.Redis) -> None:
    bare = hashlib.sha256(KEY.get_secret_value().encode()).hexdigest()

    named = fingerprint(redis_client, KEY)

    assert len(named) == 12 and named not in bare


def test_the_fingerprint_is_an_hmac_with_a_random_salt_kept_in_redis(
    redis_client: redis.Redis,
) -> None:
    named = fingerprint(redis_client, KEY)

    salt = bytes.fromhex(str(redis_client.get(KEY_SALT)))
    assert len(salt) == 32
    assert redis_client.ttl(KEY_SALT) == -1  # kept for good
    expected = hmac.new(salt, KEY.get_secret_value().encode(), hashlib.sha256).hexdigest()
    assert named == expected[:12]


def test_every_worker_of_a_deployment_gets_the_same_fingerprint(
    redis_server: RedisServer,
) -> None:
    workers = [redis.Redis.from_url(redis_server.url) for _ in range(3)]  # bytes replies too

    named = {fingerprint(client, KEY) for client in workers}

    assert len(named) == 1
    assert fingerprint(workers[0], SecretStr("sk-other")) not in named


def test_another_deployment_names_the_same_key_differently(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    first = fingerprint(redis_client, KEY)

    redis_client.flushall()  # a deployment with a Redis of its own: a salt of its own

    assert fingerprint(redis_client, KEY) != first
