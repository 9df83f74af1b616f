"""A request carries only the cluster settings skystate names (``server.settings``), never
an arbitrary environment variable for the worker that runs it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import skystate as sky

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("settings", [
    {"LD_PRELOAD": "/tmp/evil.so"},
    {"PATH": "/tmp/evil"},
    {"SKYSTATE_TIME_SCALE": "6" * 300},
    {"SKYSTATE_TIME_SCALE": 60},
])
def test_a_request_with_other_settings_is_refused_and_not_queued(
        home: Path, settings: dict[str, object]) -> None:
    url = sky.api_info()["url"]
    before = len(sky.api_status(all_status=True))
    reply = httpx.post(f"{url}/api/v1/requests", json={
        "name": "status", "args": {}, "user_name": "me", "settings": settings})
    assert reply.status_code == 422
    assert len(sky.api_status(all_status=True)) == before


def test_the_allowed_setting_is_accepted(home: Path) -> None:
    url = sky.api_info()["url"]
    reply = httpx.post(f"{url}/api/v1/requests", json={
        "name": "status", "args": {}, "user_name": "me",
        "settings": {"SKYSTATE_TIME_SCALE": "60"}})
    assert reply.status_code == 200 and reply.json()["request_id"]
