"""A DICOMweb server as the application knows it: its URL and, optionally, how to authenticate.

Secrets (a password or a bearer token) live only in this object and the HTTP session made from it: its repr, its
`public_url` and `to_dict()` leave them out, and a URL given with `user:password@` is split so that the password never
travels in a string that may be printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

ENV_PASSWORD = "BRAINMRI_PACS_PASSWORD"
ENV_TOKEN = "BRAINMRI_PACS_TOKEN"
DEFAULT_TIMEOUT_S = 30.0


def _host(parts: SplitResult) -> str:
    """host[:port] without user or password (IPv6 addresses in brackets)."""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:  # not a number: refused by the check, which shows the URL through here
        port = None
    return host + (f":{port}" if port else "")


@dataclass(frozen=True)
class ServerSettings:
    url: str  # DICOMweb root, such as http://127.0.0.1:8042/dicom-web
    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)  # bearer token; used instead of basic authentication when given
    timeout_s: float = DEFAULT_TIMEOUT_S
    name: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.strip())
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError(f"not an http(s) DICOMweb URL (bad port): {self.public_url}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) DICOMweb URL: {self.public_url}")
        if self.timeout_s <= 0:
            raise ValueError("timeout must be positive")
        if parts.username or parts.password:
            # Credentials written into the URL move to their own fields, so the URL itself is safe to show.
            object.__setattr__(self, "username", self.username or unquote(parts.username or ""))
            object.__setattr__(self, "password", self.password or unquote(parts.password or ""))
        object.__setattr__(self, "url", urlunsplit((parts.scheme, _host(parts), parts.path.rstrip("/"), "", "")))

    @property
    def public_url(self) -> str:
        """The URL without any credentials: the only form that reaches messages and logs."""
        parts = urlsplit(self.url.strip())
        return urlunsplit((parts.scheme, _host(parts), parts.path, "", ""))

    @property
    def auth_kind(self) -> str:
        return "bearer" if self.token else "basic" if self.username else "none"

    def to_dict(self) -> dict:
        """For the settings file: everything but the secrets (they are asked for, or come from the environment)."""
        return {"name": self.name, "url": self.url, "username": self.username, "auth": self.auth_kind,
                "timeout_s": self.timeout_s}

    @classmethod
    def from_dict(cls, data: dict, password: str = "", token: str = "") -> "ServerSettings":
        return cls(url=str(data["url"]), username=str(data.get("username", "")), password=password, token=token,
                   timeout_s=float(data.get("timeout_s", DEFAULT_TIMEOUT_S)), name=str(data.get("name", "")))

    @classmethod
    def from_environment(cls, url: str, username: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> "ServerSettings":
        """The command line's way: secrets from BRAINMRI_PACS_PASSWORD / BRAINMRI_PACS_TOKEN, never from arguments
        (other users of the machine can read a process's arguments)."""
        return cls(url=url, username=username, password=os.environ.get(ENV_PASSWORD, ""),
                   token=os.environ.get(ENV_TOKEN, ""), timeout_s=timeout_s)
