"""A real Orthanc with its DICOMweb plugin for the PACS tests: started on a free loopback port with its storage in a
temporary folder, stopped after the test. Missing Orthanc is a failure that says what to install, never a skip:
`make test` installs it where it can (see the Makefile)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

ORTHANC = os.environ.get("ORTHANC_BIN", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = os.environ.get("ORTHANC_DICOMWEB_PLUGIN", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
INSTALL_HINT = ("Orthanc with its DICOMweb plugin is needed for the PACS tests: install the Debian packages "
                "`orthanc` and `orthanc-dicomweb` (apt-get install orthanc orthanc-dicomweb; `make test` does it "
                "when run as root)")
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_orthanc() -> None:
    missing = [p for p in (ORTHANC, DICOMWEB_PLUGIN) if not Path(p).exists() and not shutil.which(p)]
    if missing:
        raise RuntimeError(f"{INSTALL_HINT}; missing: {', '.join(missing)}")


@dataclass
class Orthanc:
    """One running server; `dicomweb` is the URL the application is given."""

    port: int
    folder: Path
    process: subprocess.Popen
    users: dict[str, str]
    dicom_port: int | None = None  # DIMSE, AE title ORTHANC; it knows the calling AE title BRAINMRI

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.root}/dicom-web"

    def _request(self, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
        request = urllib.request.Request(self.root + path, data=data, method=method)
        if self.users:
            user, password = next(iter(self.users.items()))
            request.add_header("Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode())
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def upload(self, path: Path) -> None:
        """Stores one DICOM file through Orthanc's own REST API (not the code under test)."""
        self._request("/instances", Path(path).read_bytes(), "POST")

    def rest(self, path: str):
        return json.loads(self._request(path))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_orthanc(folder: Path, users: dict[str, str] | None = None, dicom: bool = False) -> Orthanc:
    require_orthanc()
    folder = Path(folder)
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    dicom_port = free_port() if dicom else None
    config = {
        "Name": "brainmri-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "DicomServerEnabled": dicom,
        "DicomPort": dicom_port or 4242,
        "DicomAet": "ORTHANC",
        "DicomModalities": {"brainmri": ["BRAINMRI", "127.0.0.1", 104]},
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": users or {},
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StorageCompression": False,
    }
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen([ORTHANC, str(config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    log.close()
    server = Orthanc(port, folder, process, dict(users or {}), dicom_port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited at start: {(folder / 'orthanc.log').read_text()[-2000:]}")
        try:
            server.rest("/system")
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer on port {port} within {START_TIMEOUT_S:.0f} s")
