"""The released OHIF viewer, served on loopback in front of Orthanc's DICOMweb.

One HTTP server in a thread: the OHIF web app from ``ohif/dist`` (fetched by
``ohif/fetch``: npm's ``@ohif/app``, pinned), an ``app-config.js`` whose only
data source is Orthanc's DICOMweb, and ``/dicom-web/`` passed through to that
Orthanc, so the browser sees one origin (Orthanc 1.10 sends no CORS headers).
"""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import pytest

from tests.conftest import free_port

DIST = Path(__file__).parent / "ohif" / "dist"

APP_CONFIG = b"""window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 1,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  disableConfirmationPrompts: true,
  investigationalUseDialog: { option: 'never' },
  defaultDataSourceName: 'pacs',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'pacs',
      configuration: {
        friendlyName: 'Orthanc',
        name: 'orthanc',
        wadoUriRoot: window.location.origin + '/wado',
        qidoRoot: window.location.origin + '/dicom-web',
        wadoRoot: window.location.origin + '/dicom-web',
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""


def require_ohif() -> None:
    if not (DIST / "index.html").is_file():
        pytest.skip(f"the OHIF viewer is not fetched: run {DIST.parent / 'fetch'}")


class OHIFServer:
    """OHIF at ``url``, its DICOMweb requests answered by the Orthanc at ``pacs_url``."""

    def __init__(self, pacs_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        handler = _handler(pacs_url)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OHIFServer:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(pacs_url: str) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(DIST), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes, content_type: str | None) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path.startswith(("/dicom-web/", "/wado")):
                request = urllib.request.Request(
                    pacs_url + self.path, headers={"Accept": self.headers.get("Accept", "*/*")}
                )
                try:
                    with urllib.request.urlopen(request, timeout=120) as answer:
                        self._answer(answer.status, answer.read(), answer.headers["Content-Type"])
                except urllib.error.HTTPError as error:
                    self._answer(error.code, error.read(), error.headers["Content-Type"])
                return
            if path == "/app-config.js":
                self._answer(200, APP_CONFIG, "application/javascript")
                return
            if not (DIST / path.lstrip("/")).is_file():
                self.path = "/index.html"  # the web app's own routes (/viewer?...)
            super().do_GET()

    return Handler
