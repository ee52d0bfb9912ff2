"""The fakes as a subprocess (python -m pushstream.testing.fakes), driven through the control API."""

from __future__ import annotations

import json
from pathlib import Path

import google.auth.transport.requests
import httpx
from google.oauth2 import service_account

from pushstream.testing.fakes import FakesProcess, webpush_subscription
from pushstream.testing.fakes.clients import FCM_SCOPES


def test_subprocess_fakes_are_steered_and_observed(tmp_path: Path) -> None:
    fakes = FakesProcess(tmp_path / "dev")
    with fakes as control:
        endpoints = fakes.endpoints
        assert endpoints is not None and control.health()
        setup = control.setup()
        assert setup["fcm_token_uri"] == f"{endpoints.fcm_url}/token"  # rewritten for the ephemeral port

        credentials = service_account.Credentials.from_service_account_file(
            setup["fcm_service_account_file"], scopes=list(FCM_SCOPES)
        )
        credentials.refresh(google.auth.transport.requests.Request())
        control.script("fcm", "doomed", 503, retry_after=5)
        send_url = f"{endpoints.fcm_url}/v1/projects/{setup['fcm_project_id']}/messages:send"
        with httpx.Client(http1=False, http2=True) as client:
            auth = {"Authorization": f"Bearer {credentials.token}"}
            ok = client.post(send_url, json={"message": {"token": "t1", "data": {"k": "v"}}}, headers=auth)
            failed = client.post(send_url, json={"message": {"token": "doomed"}}, headers=auth)

        assert ok.status_code == 200 and ok.http_version == "HTTP/2"
        assert failed.status_code == 503 and failed.headers["retry-after"] == "5"
        records = control.wait_for_requests("fcm", 3)
        assert [r["status"] for r in records] == [200, 200, 503]
        assert records[1]["json"] == {"message": {"token": "t1", "data": {"k": "v"}}}
        assert json.loads(records[1]["body"]) == records[1]["json"]
        stats = control.stats()
        assert stats["fcm"]["token_requests"] == 1 and stats["fcm"]["by_status"] == {"200": 2, "503": 1}

        subscription = webpush_subscription(endpoints.webpush_origin, bytes.fromhex(setup["webpush_seed"]), "s1")
        assert subscription["endpoint"] == f"{endpoints.webpush_origin}/push/s1"
        control.reset()
        assert control.stats()["fcm"]["requests"] == 0 and control.requests("fcm") == []
    assert fakes.client is None and not (tmp_path / "dev" / "fakes-ready.json").exists()
