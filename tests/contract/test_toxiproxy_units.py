"""Pure helpers of nodes.toxiproxy: Go-compatible parsing and the slicer's cut points."""

from __future__ import annotations

import random

import pytest

from nodes.toxiproxy.addr import split_host_port
from nodes.toxiproxy.errors import ApiError, decode_json
from nodes.toxiproxy.toxics import float32, parse_new_toxic, parse_toxic_update, slice_offsets

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("size", "avg", "var"), [(200, 10, 4), (1000, 100, 0), (7, 10, 4), (65536, 1, 0),
                                                  (5000, 300, 299), (1, 0, 0), (100, 0, 0)])
def test_slice_offsets_cover_the_data_with_nonempty_pieces(size, avg, var):
    cuts = slice_offsets(size, avg, var, random.Random(1).randrange)
    assert cuts[0] == 0 and cuts[-1] == size
    pieces = [b - a for a, b in zip(cuts, cuts[1:], strict=False)]
    assert all(p > 0 for p in pieces)
    if size - avg > var and size > 1:  # big enough to be split
        assert len(pieces) > 1
        assert max(pieces) <= max(avg + var, 1)


def test_split_host_port_like_go():
    assert split_host_port("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_host_port("[::1]:0") == ("::1", 0)
    assert split_host_port(":8474") == ("", 8474)
    for bad, msg in [("local373", "missing port in address"), ("a:b:c", "too many colons"),
                     ("h:99999", "invalid port")]:
        with pytest.raises(ValueError, match=msg):
            split_host_port(bad)


def test_decode_json_errors_are_bad_request_body():
    assert decode_json(b' {"a": 1} trailing') == {"a": 1}  # first value only, like Go's Decoder
    for raw in (b"", b"   ", b"{", b"nope"):
        with pytest.raises(ApiError) as e:
            decode_json(raw)
        assert e.value.status == 400 and e.value.message.startswith("bad request body: ")


def test_toxic_parsing_defaults_case_insensitive_keys_and_merge():
    t = parse_new_toxic({"Type": "latency", "STREAM": "UpStream", "attributes": {"LATENCY": 5}})
    assert (t.name, t.direction, t.stream, t.toxicity) == ("latency_UpStream", "upstream", "UpStream", 1.0)
    assert t.attributes == {"latency": 5, "jitter": 0}
    u = parse_toxic_update(t, {"attributes": {"jitter": 2}, "toxicity": 0.1, "name": "ignored"})
    assert u.name == t.name and u.attributes == {"latency": 5, "jitter": 2}
    assert u.to_json()["toxicity"] == 0.1
    with pytest.raises(ApiError, match="cannot unmarshal number 1.0 into Go struct field"):
        parse_new_toxic({"type": "latency", "attributes": {"latency": 1.0}})
    with pytest.raises(ApiError) as e:
        parse_new_toxic({"type": "latency", "name": "x"}, name_taken=lambda n: n == "x")
    assert e.value.status == 409


def test_float32_shortest_form():
    assert float32(0.1) == 0.1
    assert float32(0.123456789) == 0.12345679
    assert float32(1) == 1.0
