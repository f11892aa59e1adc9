"""A Toxiproxy 2.x HTTP API client without global state.

toxiproxy-python keeps the server address in class attributes of its ``APIConsumer`` (one
server per process) and calls ``requests`` without timeouts, so a stalled Toxiproxy would hang
the harness and two testnets could not be driven from one process. :class:`ToxiproxyClient`
talks to the same endpoints through its own ``requests.Session`` with a timeout on every call.
The library is still used where it fits: its exception types (``ProxyExists``, ``NotFound``,
``InvalidToxic``) are base classes of ours, so code written against toxiproxy-python catches
our errors too. See docs/faults.md ("Toxiproxy client").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

#: toxic types of Toxiproxy 2.x and their attributes (documentation and early validation)
TOXIC_TYPES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
    "noop": (),
}
STREAMS = ("upstream", "downstream")


class ToxiproxyError(RuntimeError):
    """A Toxiproxy API call failed. The message names the API URL, the proxy (and toxic), the
    HTTP status and the server's own message."""

    def __init__(self, url: str, action: str, message: str, *, status: int | None = None,
                 proxy: str | None = None, toxic: str | None = None) -> None:
        self.url = url
        self.action = action
        self.server_message = message
        self.status = status
        self.proxy = proxy
        self.toxic = toxic
        where = f"proxy {proxy!r}" if proxy else "server"
        if toxic:
            where += f", toxic {toxic!r}"
        status_s = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"Toxiproxy {url}: {action} ({where}) failed: {status_s}: {message}")


class ToxiproxyUnreachable(ToxiproxyError):
    """The API did not answer (connection refused, timeout): is the Toxiproxy server running?"""


class ToxiproxyNotFound(ToxiproxyError, NotFound):
    """404: no such proxy or toxic."""


class ToxiproxyExists(ToxiproxyError, ProxyExists):
    """409: a proxy or toxic with that name exists already."""


class ToxiproxyBadRequest(ToxiproxyError, InvalidToxic):
    """400: the request was rejected (invalid toxic type, attribute, stream, address, …)."""


@dataclass
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Toxic:
        return cls(name=d["name"], type=d["type"], stream=d.get("stream", "downstream"),
                   toxicity=float(d.get("toxicity", 1.0)),
                   attributes=dict(d.get("attributes") or {}))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity, "attributes": dict(self.attributes)}


@dataclass
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: list[Toxic] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Proxy:
        return cls(name=d["name"], listen=d.get("listen", ""), upstream=d.get("upstream", ""),
                   enabled=bool(d.get("enabled", True)),
                   toxics=[Toxic.from_json(t) for t in d.get("toxics") or []])

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled}


_ERRORS: dict[int, type[ToxiproxyError]] = {
    400: ToxiproxyBadRequest, 404: ToxiproxyNotFound, 409: ToxiproxyExists,
}


class ToxiproxyClient:
    """One Toxiproxy server, e.g. ``ToxiproxyClient("http://127.1.0.1:8474")``.

    Every call has ``timeout`` seconds; failures raise :class:`ToxiproxyError` subclasses.
    Instances are independent (no process-global host/port) and may be used as context managers.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Toxiproxy URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "session-testnet-faults"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ToxiproxyClient({self.url!r})"

    # -- transport ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, action: str, body: Any = None, *,
              proxy: str | None = None, toxic: str | None = None,
              ok: tuple[int, ...] = (200, 201, 204)) -> Any:
        url = self.url + path
        try:
            resp = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.Timeout:
            raise ToxiproxyUnreachable(self.url, action, f"no answer within {self.timeout}s",
                                       proxy=proxy, toxic=toxic) from None
        except requests.RequestException as e:
            raise ToxiproxyUnreachable(
                self.url, action, f"{e.__class__.__name__}: {e}; is the Toxiproxy server of "
                "this testnet running? ('testnet status')", proxy=proxy, toxic=toxic) from None
        text = resp.text
        if resp.status_code not in ok:
            message = text.strip()
            try:
                data = json.loads(text)
                if isinstance(data, dict) and data.get("error"):
                    message = str(data["error"])
            except ValueError:
                pass
            cls = _ERRORS.get(resp.status_code, ToxiproxyError)
            raise cls(self.url, action, message or resp.reason or "", status=resp.status_code,
                      proxy=proxy, toxic=toxic)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    @staticmethod
    def _p(name: str) -> str:
        return quote(name, safe="")

    # -- server ------------------------------------------------------------------------------
    def version(self) -> str:
        """The server version ("2.5.0"); both the plain-text (≤ 2.5) and the JSON (≥ 2.6)
        answer forms are understood."""
        data = self._call("GET", "/version", "version")
        if isinstance(data, dict):
            return str(data.get("version", ""))
        return str(data).strip()

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (POST /reset)."""
        self._call("POST", "/reset", "reset")

    # -- proxies -----------------------------------------------------------------------------
    def proxies(self) -> dict[str, Proxy]:
        data = self._call("GET", "/proxies", "list proxies") or {}
        return {name: Proxy.from_json(p) for name, p in data.items()}

    def create_proxy(self, name: str, listen: str, upstream: str, enabled: bool = True) -> Proxy:
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return Proxy.from_json(self._call("POST", "/proxies", "create proxy", body, proxy=name))

    def populate(self, proxies: list[Proxy | dict[str, Any]]) -> list[Proxy]:
        """Create or replace several proxies at once (POST /populate): proxies whose listen or
        upstream changed are recreated, identical ones are kept."""
        body = [p.to_json() if isinstance(p, Proxy) else dict(p) for p in proxies]
        data = self._call("POST", "/populate", "populate", body)
        items = data.get("proxies", []) if isinstance(data, dict) else (data or [])
        return [Proxy.from_json(p) for p in items]

    def get_proxy(self, name: str) -> Proxy:
        return Proxy.from_json(self._call("GET", f"/proxies/{self._p(name)}", "get proxy",
                                          proxy=name))

    def find_proxy(self, name: str) -> Proxy | None:
        try:
            return self.get_proxy(name)
        except ToxiproxyNotFound:
            return None

    def update_proxy(self, name: str, *, listen: str | None = None, upstream: str | None = None,
                     enabled: bool | None = None) -> Proxy:
        body = {k: v for k, v in (("listen", listen), ("upstream", upstream),
                                  ("enabled", enabled)) if v is not None}
        return Proxy.from_json(self._call("POST", f"/proxies/{self._p(name)}", "update proxy",
                                          body, proxy=name))

    def delete_proxy(self, name: str, *, missing_ok: bool = False) -> bool:
        """Delete a proxy; returns False if it did not exist and ``missing_ok``."""
        try:
            self._call("DELETE", f"/proxies/{self._p(name)}", "delete proxy", proxy=name)
        except ToxiproxyNotFound:
            if missing_ok:
                return False
            raise
        return True

    def enable(self, name: str) -> Proxy:
        return self.update_proxy(name, enabled=True)

    def disable(self, name: str) -> Proxy:
        """Stop listening and drop every connection of the proxy."""
        return self.update_proxy(name, enabled=False)

    # -- toxics ------------------------------------------------------------------------------
    def toxics(self, proxy: str) -> list[Toxic]:
        data = self._call("GET", f"/proxies/{self._p(proxy)}/toxics", "list toxics", proxy=proxy)
        return [Toxic.from_json(t) for t in data or []]

    def add_toxic(self, proxy: str, type: str, attributes: dict[str, Any] | None = None,  # noqa: A002
                  stream: str = "downstream", toxicity: float = 1.0,
                  name: str | None = None) -> Toxic:
        """Add a toxic; its name defaults to ``<type>_<stream>`` (Toxiproxy's default)."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be 'upstream' or 'downstream', got {stream!r}")
        if not 0.0 <= toxicity <= 1.0:
            raise ValueError(f"toxicity must be within [0, 1], got {toxicity}")
        name = name or f"{type}_{stream}"
        body = {"name": name, "type": type, "stream": stream, "toxicity": toxicity,
                "attributes": dict(attributes or {})}
        data = self._call("POST", f"/proxies/{self._p(proxy)}/toxics", f"add {type} toxic", body,
                          proxy=proxy, toxic=name)
        return Toxic.from_json(data)

    def update_toxic(self, proxy: str, name: str, attributes: dict[str, Any] | None = None,
                     toxicity: float | None = None) -> Toxic:
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        data = self._call("POST", f"/proxies/{self._p(proxy)}/toxics/{self._p(name)}",
                          "update toxic", body, proxy=proxy, toxic=name)
        return Toxic.from_json(data)

    def remove_toxic(self, proxy: str, name: str, *, missing_ok: bool = False) -> bool:
        try:
            self._call("DELETE", f"/proxies/{self._p(proxy)}/toxics/{self._p(name)}",
                       "remove toxic", proxy=proxy, toxic=name)
        except ToxiproxyNotFound:
            if missing_ok:
                return False
            raise
        return True


__all__ = ["ToxiproxyClient", "ToxiproxyError", "ToxiproxyUnreachable", "ToxiproxyNotFound",
           "ToxiproxyExists", "ToxiproxyBadRequest", "Proxy", "Toxic", "TOXIC_TYPES", "STREAMS"]
