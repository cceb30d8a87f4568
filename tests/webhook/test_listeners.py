"""The webhook's two listeners: the public one (what Portmone reaches from the internet) answers
`POST /portmone/callback` and 404 to everything else; intake, the codec, health and metrics are on
the internal one only, which in turn takes no callbacks."""

from __future__ import annotations

import pytest

from runtime import devdefaults
from tests.callbacks import paid
from tests.stack import Stack

INTERNAL_ONLY = [
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/receipts/accepted"),
    ("POST", "/codec/decode"),
    ("POST", "/codec/encode"),
    ("OPTIONS", "/codec/decode"),
]


@pytest.mark.parametrize(
    ("method", "path"),
    [*INTERNAL_ONLY, ("GET", "/portmone/callback"), ("PUT", "/portmone/callback"), ("GET", "/"),
     ("GET", "/portmone/callback/../metrics"), ("POST", "/admin")],
)
async def test_the_public_listener_answers_404_to_all_but_callbacks(stack: Stack, method: str, path: str) -> None:
    auth = {"Authorization": f"Bearer {devdefaults.DEV_INTAKE_TOKEN}", "Content-Type": "application/json"}
    resp = await stack.http.request(method, f"{stack.webhook_url}{path}", headers=auth, content=b"{}")
    assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
    assert "payout_" not in resp.text and "portmone_" not in resp.text  # no metrics leak out


async def test_callbacks_on_the_public_listener_the_rest_on_the_internal_one(stack: Stack) -> None:
    body = paid("LISTENERS-UNKNOWN-BILL")
    public = await stack.post_callback(body)
    assert public.status_code == 202, public.text  # stored for later: no payout has this bill
    internal = await stack.http.post(f"{stack.internal_url}/portmone/callback", content=body,
                                     headers={"Content-Type": "application/xml"})
    assert internal.status_code == 404
    for method, path in INTERNAL_ONLY[:3]:
        resp = await stack.http.request(method, f"{stack.internal_url}{path}")
        assert resp.status_code == 200, (path, resp.text)
