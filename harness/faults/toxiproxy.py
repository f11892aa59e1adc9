"""A Toxiproxy 2.x API client: toxiproxy-python, wrapped so it has no global state.

Control of Toxiproxy goes through toxiproxy-python (``toxiproxy.Toxiproxy`` /
``toxiproxy.Proxy``), but the library cannot be used as is, for three reasons:

- **Global host/port.** Every request is made by the *class* ``toxiproxy.api.APIConsumer``,
  whose class attributes ``host`` and ``port`` are the only server address (set through
  ``Toxiproxy().update_api_consumer``). ``toxiproxy.server`` and ``toxiproxy.proxy`` import that
  class by name. One process could drive one server only: two testnets, or a test and the CLI
  code in one process, would overwrite each other's address.
- **No timeouts.** ``APIConsumer.get/post/delete`` call ``requests`` without a timeout and
  ``Toxiproxy().running()`` (used by ``version()``) probes with a blocking socket without one: a
  stalled Toxiproxy would hang the harness forever.
- **Weak error mapping.** Its ``validate_response`` maps only 400/404/409 to exceptions
  (``InvalidToxic``, ``NotFound``, ``ProxyExists``) carrying the raw body; any other status (500,
  503, …) passes silently, and the status, URL and proxy are lost.

So each :class:`ToxiproxyClient` makes its own subclass of ``toxiproxy.api.APIConsumer`` bound to
its server (``host``/``port`` class attributes, base URL, ``requests.Session``) whose
``get``/``post``/``delete`` add the client's timeout and validate answers with our own validator:
every status outside 2xx raises a :class:`ToxiproxyError` naming the URL, the action, the proxy
(and toxic), the HTTP status and the server's ``error`` message; no answer raises
:class:`ToxiproxyUnreachable`. For the duration of each call that subclass (and a ``running()``
probe with the same timeout) is installed in place of the library's names in ``toxiproxy.server``
and ``toxiproxy.proxy`` under one module-level lock, and the library's own names are always put
back afterwards, even on errors. Calls of all clients in the process are therefore serialized;
each request is bounded by its client's timeout. (Code using toxiproxy-python directly keeps its
global address, but must not run on another thread during a ``ToxiproxyClient`` call.)

Operations the library offers run with its objects (``Toxiproxy().proxies/create/get_proxy/
destroy/reset/version``, ``Proxy.toxics/add_toxic/destroy_toxic/enable/disable``). Those it lacks
— the atomic ``POST /populate`` (the library's ``populate`` is list-then-create), proxy update
(``POST /proxies/{name}``) and toxic update — are requests through the same bound ``APIConsumer``
subclass, so there is exactly one HTTP path. Where the library drops data the server sent (the
toxics of ``GET /proxies``, the answer of ``add_toxic``), it is read from the response the bound
consumer recorded for the call. The library's exception types are base classes of ours, so code
written against toxiproxy-python keeps catching our errors. See docs/faults.md ("Toxiproxy
client").
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import requests
import toxiproxy.api as _lib_api
import toxiproxy.proxy as _lib_proxy
import toxiproxy.server as _lib_server
import toxiproxy.toxic as _lib_toxic
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


# -- toxiproxy-python, bound to one server -----------------------------------------------------

#: library modules that refer to ``toxiproxy.api.APIConsumer`` by an imported name (0.1.x:
#: server and proxy; ``toxiproxy.toxic`` is included should a later version import it too)
_CONSUMER_MODULES: tuple[ModuleType, ...] = tuple(
    m for m in (_lib_server, _lib_proxy, _lib_toxic) if hasattr(m, "APIConsumer"))
if (_lib_server not in _CONSUMER_MODULES or _lib_proxy not in _CONSUMER_MODULES
        or not callable(getattr(_lib_server, "can_connect_to", None))):  # pragma: no cover
    raise ImportError(
        "toxiproxy-python's module layout changed (toxiproxy.server / toxiproxy.proxy no longer "
        "import APIConsumer, or toxiproxy.server no longer imports can_connect_to), so "
        "harness.faults.toxiproxy cannot bind it to one server; install toxiproxy-python 0.1.x")

#: held while one client's bound APIConsumer is installed in the library modules
_LIBRARY_LOCK = threading.Lock()


@contextmanager
def _installed(consumer: type[_lib_api.APIConsumer],
               probe: Callable[[str, int], bool]) -> Iterator[None]:
    """Make toxiproxy-python use ``consumer`` for every request and ``probe`` for
    ``Toxiproxy.running()`` while the block runs, under :data:`_LIBRARY_LOCK`. The library's
    previous names are put back however the block ends."""
    with _LIBRARY_LOCK:
        saved = [(m, m.APIConsumer) for m in _CONSUMER_MODULES]
        saved_probe = _lib_server.can_connect_to
        try:
            for m, _ in saved:
                setattr(m, "APIConsumer", consumer)  # noqa: B010 (the library's name)
            _lib_server.can_connect_to = probe
            yield
        finally:
            _lib_server.can_connect_to = saved_probe
            for m, old in saved:
                setattr(m, "APIConsumer", old)  # noqa: B010 (the library's name)


@dataclass
class _Call:
    """One ToxiproxyClient call: what its errors name, and the answers its requests got."""

    action: str
    proxy: str | None = None
    toxic: str | None = None
    responses: list[requests.Response] = field(default_factory=list)
    probe_error: str | None = None

    def last_json(self) -> Any:
        """The JSON of the last answer (the library has decoded it already)."""
        return self.responses[-1].json()


def _validate_response(response: requests.Response, base_url: str,
                       call: _Call) -> requests.Response:
    """Replaces ``toxiproxy.api.validate_response`` (which maps only 400/404/409 and keeps just
    the body): every status outside 2xx raises a :class:`ToxiproxyError` with the URL, action,
    proxy/toxic, status and the server's ``error`` message; 400/404/409 as the subclasses that
    derive from the library's ``InvalidToxic``/``NotFound``/``ProxyExists``."""
    status = response.status_code
    if 200 <= status < 300:
        return response
    text = response.text
    message = text.strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("error"):
            message = str(data["error"])
    except ValueError:
        pass
    cls = _ERRORS.get(status, ToxiproxyError)
    raise cls(base_url, call.action, message or response.reason or "", status=status,
              proxy=call.proxy, toxic=call.toxic)


class _BoundAPIConsumer(_lib_api.APIConsumer):
    """toxiproxy-python's ``APIConsumer`` bound to one server, with timeouts and rich errors.

    :meth:`bind` makes one subclass per :class:`ToxiproxyClient` (address, session);
    :meth:`for_call` one subclass of that per call (timeout, :class:`_Call`). The library calls
    these classmethods on whatever class its modules' ``APIConsumer`` name holds, so nothing here
    is shared between clients or calls."""

    base_url: ClassVar[str]
    session: ClassVar[requests.Session]
    timeout: ClassVar[float]
    call: ClassVar[_Call]

    @classmethod
    def bind(cls, url: str, session: requests.Session) -> type[_BoundAPIConsumer]:
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as e:
            raise ValueError(f"Toxiproxy URL {url!r} has an invalid port: {e}") from None
        if not parts.hostname:
            raise ValueError(f"Toxiproxy URL {url!r} has no host")
        return type("BoundAPIConsumer", (cls,), {
            "host": parts.hostname, "port": port, "base_url": url, "session": session})

    @classmethod
    def for_call(cls, call: _Call, timeout: float) -> type[_BoundAPIConsumer]:
        return type(cls.__name__, (cls,), {"call": call, "timeout": timeout})

    @classmethod
    def get(cls, url: str, params: Any = None, **kwargs: Any) -> requests.Response:
        return cls._request("GET", url, params=params, **kwargs)

    @classmethod
    def post(cls, url: str, data: Any = None, json: Any = None,
             **kwargs: Any) -> requests.Response:
        return cls._request("POST", url, data=data, json=json, **kwargs)

    @classmethod
    def delete(cls, url: str, **kwargs: Any) -> requests.Response:
        return cls._request("DELETE", url, **kwargs)

    @classmethod
    def _request(cls, method: str, path: str, **kwargs: Any) -> requests.Response:
        call = cls.call
        kwargs.setdefault("timeout", cls.timeout)
        try:
            response = cls.session.request(method, cls.base_url + path, **kwargs)
        except requests.Timeout:
            raise ToxiproxyUnreachable(cls.base_url, call.action,
                                       f"no answer within {kwargs['timeout']}s",
                                       proxy=call.proxy, toxic=call.toxic) from None
        except requests.RequestException as e:
            raise ToxiproxyUnreachable(
                cls.base_url, call.action, f"{e.__class__.__name__}: {e}; is the Toxiproxy "
                "server of this testnet running? ('testnet status')",
                proxy=call.proxy, toxic=call.toxic) from None
        call.responses.append(response)
        return _validate_response(response, cls.base_url, call)

    @classmethod
    def probe(cls, host: str, port: int) -> bool:
        """Stands in for ``toxiproxy.utils.can_connect_to`` (``Toxiproxy.running()``): the same
        TCP connect check, with the call's timeout and IPv6 support; records why it failed."""
        try:
            with socket.create_connection((host, port), timeout=cls.timeout):
                return True
        except OSError as e:
            cls.call.probe_error = f"{e.__class__.__name__}: {e}"
            return False


def _proxy_from_lib(p: _lib_proxy.Proxy, raw: Any) -> Proxy:
    """Our :class:`Proxy` from the library's (which drops the toxics) and the server's JSON for
    that proxy (where the toxics are)."""
    toxics = raw.get("toxics") if isinstance(raw, dict) else None
    return Proxy(name=p.name, listen=p.listen or "", upstream=p.upstream or "",
                 enabled=bool(p.enabled), toxics=[Toxic.from_json(t) for t in toxics or []])


def _toxic_from_lib(t: _lib_toxic.Toxic) -> Toxic:
    return Toxic(name=t.name, type=t.type, stream=t.stream or "downstream",
                 toxicity=float(t.toxicity), attributes=dict(t.attributes or {}))


class ToxiproxyClient:
    """One Toxiproxy server, e.g. ``ToxiproxyClient("http://127.1.0.1:8474")``.

    Requests are made by toxiproxy-python bound to this server (see the module docstring); every
    request has ``timeout`` seconds; failures raise :class:`ToxiproxyError` subclasses. Instances
    are independent (no process-global host/port), may be used from several threads (calls are
    serialized process-wide) and as context managers.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Toxiproxy URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "session-testnet-faults"
        self._api = _BoundAPIConsumer.bind(self.url, self._session)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ToxiproxyClient({self.url!r})"

    # -- transport ---------------------------------------------------------------------------
    @contextmanager
    def _library(self, action: str, *, proxy: str | None = None,
                 toxic: str | None = None) -> Iterator[type[_BoundAPIConsumer]]:
        """Run the block with toxiproxy-python bound to this server; yields the call's consumer
        (for the requests the library lacks; ``.call`` holds the answers). Keep the block to the
        library calls: every client in the process waits while it runs."""
        call = _Call(action, proxy, toxic)
        api = self._api.for_call(call, self.timeout)
        try:
            with _installed(api, api.probe):
                yield api
        except ToxiproxyError:
            raise
        except ProxyExists as e:
            # toxiproxy-python's create() lists the proxies first and raises this by itself;
            # 409 is what the server answers for the same conflict
            raise ToxiproxyExists(self.url, action, f"proxy already exists ({e})", status=409,
                                  proxy=proxy, toxic=toxic) from None
        except (KeyError, ValueError) as e:
            # the library reading an answer that is not the JSON it expects
            status = call.responses[-1].status_code if call.responses else None
            raise ToxiproxyError(self.url, action, "unexpected answer "
                                 f"({e.__class__.__name__}: {e})", status=status, proxy=proxy,
                                 toxic=toxic) from None

    @staticmethod
    def _decode(response: requests.Response) -> Any:
        text = response.text
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    @staticmethod
    def _p(name: str) -> str:
        return quote(name, safe="")

    @classmethod
    def _handle(cls, name: str) -> _lib_proxy.Proxy:
        """A toxiproxy-python ``Proxy`` to call methods on. Those methods use only ``name``, which
        they put into URLs with ``%s`` (hence URL-escaped here); the rest are placeholders."""
        return _lib_proxy.Proxy(name=cls._p(name), listen="", upstream="", enabled=True)

    # -- server ------------------------------------------------------------------------------
    def version(self) -> str:
        """The server version ("2.5.0"); both the plain-text (≤ 2.5) and the JSON (≥ 2.6)
        answer forms are understood."""
        with self._library("version") as api:
            raw = _lib_server.Toxiproxy().version()
        if raw is None:  # Toxiproxy.running() found nothing listening
            raise ToxiproxyUnreachable(
                self.url, "version", f"{api.call.probe_error or 'no connection'} (TCP "
                f"{api.host}:{api.port}); is the Toxiproxy server of this testnet running? "
                "('testnet status')")
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        if isinstance(data, dict):
            return str(data.get("version", ""))
        return str(data).strip()

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (POST /reset)."""
        with self._library("reset"):
            _lib_server.Toxiproxy().reset()

    # -- proxies -----------------------------------------------------------------------------
    def proxies(self) -> dict[str, Proxy]:
        with self._library("list proxies") as api:
            found = _lib_server.Toxiproxy().proxies()
        raw = api.call.last_json()
        return {name: _proxy_from_lib(p, raw.get(name)) for name, p in found.items()}

    def create_proxy(self, name: str, listen: str, upstream: str, enabled: bool = True) -> Proxy:
        with self._library("create proxy", proxy=name) as api:
            made = _lib_server.Toxiproxy().create(upstream=upstream, name=name, listen=listen,
                                                  enabled=enabled)
        return _proxy_from_lib(made, api.call.last_json())

    def populate(self, proxies: list[Proxy | dict[str, Any]]) -> list[Proxy]:
        """Create or replace several proxies at once (POST /populate): proxies whose listen or
        upstream changed are recreated, identical ones are kept."""
        body = [p.to_json() if isinstance(p, Proxy) else dict(p) for p in proxies]
        with self._library("populate") as api:
            response = api.post("/populate", json=body)
        data = self._decode(response)
        items = data.get("proxies", []) if isinstance(data, dict) else (data or [])
        return [Proxy.from_json(p) for p in items]

    def get_proxy(self, name: str) -> Proxy:
        with self._library("get proxy", proxy=name) as api:
            found = _lib_server.Toxiproxy().get_proxy(name)
        if found is None:
            # toxiproxy-python's get_proxy searches GET /proxies; 404 is what the server answers
            # for GET /proxies/{name}
            raise ToxiproxyNotFound(self.url, "get proxy", "proxy not found (not in GET /proxies)",
                                    status=404, proxy=name)
        return _proxy_from_lib(found, api.call.last_json().get(name))

    def find_proxy(self, name: str) -> Proxy | None:
        try:
            return self.get_proxy(name)
        except ToxiproxyNotFound:
            return None

    def update_proxy(self, name: str, *, listen: str | None = None, upstream: str | None = None,
                     enabled: bool | None = None) -> Proxy:
        body = {k: v for k, v in (("listen", listen), ("upstream", upstream),
                                  ("enabled", enabled)) if v is not None}
        with self._library("update proxy", proxy=name) as api:
            response = api.post(f"/proxies/{self._p(name)}", json=body)
        return Proxy.from_json(self._decode(response))

    def delete_proxy(self, name: str, *, missing_ok: bool = False) -> bool:
        """Delete a proxy; returns False if it did not exist and ``missing_ok``."""
        try:
            with self._library("delete proxy", proxy=name):
                _lib_server.Toxiproxy().destroy(self._handle(name))
        except ToxiproxyNotFound:
            if missing_ok:
                return False
            raise
        return True

    def enable(self, name: str) -> Proxy:
        with self._library("enable proxy", proxy=name) as api:
            self._handle(name).enable()
        return Proxy.from_json(api.call.last_json())

    def disable(self, name: str) -> Proxy:
        """Stop listening and drop every connection of the proxy."""
        with self._library("disable proxy", proxy=name) as api:
            self._handle(name).disable()
        return Proxy.from_json(api.call.last_json())

    # -- toxics ------------------------------------------------------------------------------
    def toxics(self, proxy: str) -> list[Toxic]:
        with self._library("list toxics", proxy=proxy):
            found = self._handle(proxy).toxics()
        return [_toxic_from_lib(t) for t in found.values()]

    def add_toxic(self, proxy: str, type: str, attributes: dict[str, Any] | None = None,  # noqa: A002
                  stream: str = "downstream", toxicity: float = 1.0,
                  name: str | None = None) -> Toxic:
        """Add a toxic; its name defaults to ``<type>_<stream>`` (Toxiproxy's default)."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be 'upstream' or 'downstream', got {stream!r}")
        if not 0.0 <= toxicity <= 1.0:
            raise ValueError(f"toxicity must be within [0, 1], got {toxicity}")
        name = name or f"{type}_{stream}"
        with self._library(f"add {type} toxic", proxy=proxy, toxic=name) as api:
            self._handle(proxy).add_toxic(type=type, stream=stream, name=name,
                                          toxicity=toxicity, attributes=dict(attributes or {}))
        # the library drops the server's answer; the bound consumer kept it
        return Toxic.from_json(api.call.last_json())

    def update_toxic(self, proxy: str, name: str, attributes: dict[str, Any] | None = None,
                     toxicity: float | None = None) -> Toxic:
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        with self._library("update toxic", proxy=proxy, toxic=name) as api:
            response = api.post(f"/proxies/{self._p(proxy)}/toxics/{self._p(name)}", json=body)
        return Toxic.from_json(self._decode(response))

    def remove_toxic(self, proxy: str, name: str, *, missing_ok: bool = False) -> bool:
        try:
            with self._library("remove toxic", proxy=proxy, toxic=name):
                self._handle(proxy).destroy_toxic(self._p(name))
        except ToxiproxyNotFound:
            if missing_ok:
                return False
            raise
        return True


__all__ = ["ToxiproxyClient", "ToxiproxyError", "ToxiproxyUnreachable", "ToxiproxyNotFound",
           "ToxiproxyExists", "ToxiproxyBadRequest", "Proxy", "Toxic", "TOXIC_TYPES", "STREAMS"]
