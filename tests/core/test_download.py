import hashlib
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rs_ghost_qgis.core.download import DownloadError, fetch


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/served, stopped after the test."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_download_and_verify(server, tmp_path):
    served, url = server
    payload = b"GeoTIFF bytes " * 1000
    (served / "scene.tif").write_bytes(payload)
    dest = tmp_path / "cache" / "scene.tif"
    assert fetch(f"{url}/scene.tif", dest, hashlib.sha256(payload).hexdigest()) == dest
    assert dest.read_bytes() == payload
    # Already cached and right: not downloaded again (the server no longer has it).
    (served / "scene.tif").unlink()
    assert fetch(f"{url}/scene.tif", dest, hashlib.sha256(payload).hexdigest()) == dest


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    served, url = server
    (served / "scene.tif").write_bytes(b"tampered")
    dest = tmp_path / "cache" / "scene.tif"
    with pytest.raises(DownloadError, match="has sha256 .* not the expected 0000"):
        fetch(f"{url}/scene.tif", dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_not_found_is_explained(server, tmp_path):
    _, url = server
    with pytest.raises(DownloadError, match=r"Could not download .*\(HTTP 404 File not found\)"):
        fetch(f"{url}/missing.tif", tmp_path / "x.tif", "0" * 64)


def test_no_network_is_a_clear_message(tmp_path):
    dest = tmp_path / "cache" / "scene.tif"
    with pytest.raises(DownloadError) as error:
        fetch(f"http://127.0.0.1:{_closed_port()}/scene.tif", dest, "0" * 64, timeout=5)
    message = str(error.value)
    assert "Could not download" in message and "refused" in message.lower() and "network" in message
    assert str(dest) in message
    assert list(dest.parent.iterdir()) == []


def test_only_http_schemes(tmp_path):
    with pytest.raises(DownloadError, match="only http and https"):
        fetch("file:///etc/passwd", tmp_path / "x", "0" * 64)
