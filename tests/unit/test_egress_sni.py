"""Reading the server name from a TLS ClientHello, as real clients write it."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings, strategies as st

from ringfence.proxy.sni import needs_more, server_name


def client_hello(name: str | None) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = name is not None
    if name is None:
        context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_the_name_a_client_asks_for():
    hello = client_hello("allowed.test")
    assert not needs_more(hello)
    assert server_name(hello) == "allowed.test"
    assert server_name(client_hello(None)) is None


def test_split_hellos_wait_for_the_rest_and_other_bytes_are_not_tls():
    hello = client_hello("allowed.test")
    for cut in (1, 4, 5, 40, len(hello) - 1):
        assert needs_more(hello[:cut])
        with pytest.raises(ValueError):
            server_name(hello[:cut])
    # the same hello in two records
    body = hello[5:]
    split = b"\x16\x03\x01" + (100).to_bytes(2, "big") + body[:100] + \
        b"\x16\x03\x01" + (len(body) - 100).to_bytes(2, "big") + body[100:]
    assert not needs_more(split) and server_name(split) == "allowed.test"
    assert server_name(b"GET / HTTP/1.1\r\n\r\n") is None and not needs_more(b"SSH-2.0-x\r\n")


def test_unreadable_hellos_are_errors():
    with pytest.raises(ValueError):
        server_name(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00")  # a ServerHello
    with pytest.raises(ValueError):
        needs_more(b"\x16\x03\x01\x00\x05" + b"\x01\x00\x00\x10\x00" + b"\x17\x03\x03\x00\x01x")
    with pytest.raises(ValueError):
        needs_more(b"\x16" + b"\x00" * (1 << 16))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_name_none_or_valueerror(data):
    try:
        needs_more(data)
        server_name(b"\x16" + data)
    except ValueError:
        pass
