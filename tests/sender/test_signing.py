"""The webhook signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""

from __future__ import annotations

import hashlib
import hmac

from app.sender import signing

BODY = b'{"user": "u-1", "text": "Welcome"}'


def test_the_signature_is_hmac_sha256_of_the_time_a_dot_and_the_body() -> None:
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signing.sign("s3cret", 1_700_000_000, BODY) == f"t=1700000000,v1={expected}"


def test_verify_accepts_the_signature_and_refuses_another_secret_body_or_a_replay() -> None:
    header = signing.sign("s3cret", 1_700_000_000, BODY)
    assert signing.verify("s3cret", header, BODY, now=1_700_000_299)
    assert not signing.verify("other", header, BODY, now=1_700_000_000)
    assert not signing.verify("s3cret", header, BODY + b" ", now=1_700_000_000)
    assert not signing.verify("s3cret", header, BODY, now=1_700_000_301)
    assert not signing.verify("s3cret", "sha256=" + header.split("v1=")[1], BODY, now=1.7e9)
    assert not signing.verify("s3cret", "t=soon,v1=00", BODY, now=1.7e9)
