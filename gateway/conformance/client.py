"""A small HTTP client for `gateway verify`: JSON in and out, bounded timeouts, bearer token, no redirects to
other hosts, answers of bounded size. Standard library only, so `verify` runs wherever the gateway is installed."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

MAX_BODY = 32 << 20  # a node answering with more than 32 MiB is broken for our purposes


@dataclass(frozen=True)
class Answer:
    url: str
    method: str
    status: int  # 0: no HTTP answer at all (connection refused, timeout)
    body: Any = None  # parsed JSON, or None
    problem: str = ""  # why there is no usable body

    @property
    def json_ok(self) -> bool:
        return self.status != 0 and isinstance(self.body, dict)


class HttpClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.requests = 0

    def url(self, path_or_url: str, params: dict | None = None) -> str:
        url = path_or_url if "://" in path_or_url else f"{self.base_url}/{path_or_url.lstrip('/')}"
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params, doseq=True)
        return url

    def get(self, path_or_url: str, params: dict | None = None) -> Answer:
        return self._send("GET", self.url(path_or_url, params), None)

    def post(self, path_or_url: str, body: Any, *, raw: bytes | None = None) -> Answer:
        data = raw if raw is not None else json.dumps(body).encode()
        return self._send("POST", self.url(path_or_url), data)

    def _send(self, method: str, url: str, data: bytes | None) -> Answer:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.requests += 1
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read(MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(MAX_BODY + 1)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            return Answer(url, method, 0, None, f"no answer: {getattr(exc, 'reason', exc)}")
        if len(raw) > MAX_BODY:
            return Answer(url, method, status, None, f"answer larger than {MAX_BODY} bytes")
        try:
            return Answer(url, method, status, json.loads(raw))
        except (ValueError, UnicodeDecodeError):
            return Answer(url, method, status, None, "the answer is not JSON")
