"""TURN credentials in coturn's ``use-auth-secret`` scheme, against independent vectors.

The pinned vector was computed outside Python with
``printf '%s' "1700000000:u_ada" | openssl dgst -sha1 -hmac north-turn-secret -binary | base64``;
a second check asks the openssl binary again at test time, when it is installed.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from app.core.ice import ice_servers, turn_credential

SECRET = "north-turn-secret"


def test_pinned_vector() -> None:
    username, credential = turn_credential(SECRET, "u_ada", 1_700_000_000)
    assert username == "1700000000:u_ada"
    assert credential == "OJN0/OanE+gBEvTdGUPN0TF4bMY="


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary to compare with")
@pytest.mark.parametrize("user_id,expires", [("u_1", 1), ("u_ünï", 2_000_000_000), ("x" * 64, 42)])
def test_matches_openssl(user_id: str, expires: int) -> None:
    username, credential = turn_credential(SECRET, user_id, expires)
    digest = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", SECRET, "-binary"],
        input=username.encode(),
        capture_output=True,
        check=True,
    ).stdout
    encoded = subprocess.run(
        ["openssl", "base64", "-A"], input=digest, capture_output=True, check=True
    ).stdout.decode()
    assert credential == encoded


def test_ice_servers_split_stun_and_turn_and_expire_after_ttl() -> None:
    urls = [
        "stun:stun.example.org:3478",
        "turn:turn.example.org:3478?transport=udp",
        "turns:t:5349",
    ]
    servers = ice_servers(urls, SECRET, 600, "u_ada", now=1_700_000_000.4)
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    turn = servers[1]
    assert turn["urls"] == urls[1:]
    assert turn["username"] == "1700000600:u_ada"
    assert turn["credential"] == turn_credential(SECRET, "u_ada", 1_700_000_600)[1]


def test_without_a_secret_turn_urls_carry_no_credentials() -> None:
    servers = ice_servers(["turn:turn.example.org"], "", 600, "u_ada", now=0)
    assert servers == [{"urls": ["turn:turn.example.org"]}]
    assert ice_servers([], SECRET, 600, "u_ada", now=0) == []
