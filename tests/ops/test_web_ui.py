"""The Temporal Web UI (2.54, from the dev server) shows an escalated payout at a glance: headless
Chromium opens its page and finds the summary and the current details under "User Metadata"."""

from __future__ import annotations

import asyncio
import os
import shutil
from urllib.parse import quote

import pytest
from playwright.async_api import Frame, Page, async_playwright

from payouts.status import PayoutStatus as S
from tests.ops.conftest import TemporalUi
from tests.stack import TEST_PHONE, Stack

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
WAIT = 30.0  # a safety net for the single-page app, never a measured duration



@pytest.fixture(autouse=True)
def chromium_present() -> None:
    """CI installs chromium (scripts/test.sh), so a missing browser fails; PAYOUTS_SKIP_BROWSER=1 skips on purpose."""
    if shutil.which("chromium") is None or not os.path.exists(CHROMIUM):
        if os.environ.get("PAYOUTS_SKIP_BROWSER") == "1":
            pytest.skip("PAYOUTS_SKIP_BROWSER=1")
        pytest.fail("Debian's chromium is missing: run scripts/test.sh (apt-get install -y chromium) "
                    "or set PAYOUTS_SKIP_BROWSER=1 to skip the browser test explicitly", pytrace=False)


async def rendered_text(page: Page, ui_url: str, wanted: str) -> str:
    """The text of the UI's Markdown frame (`/render`) that contains `wanted`, once the app shows it."""
    async with asyncio.timeout(WAIT):
        while True:
            frames: list[Frame] = [f for f in page.frames if f.url.startswith(f"{ui_url}/render")]
            for frame in frames:
                text = await frame.inner_text("body")
                if wanted in text:
                    return text
            await asyncio.sleep(0.25)


async def test_escalated_payout_shows_its_current_details_in_the_web_ui(stack: Stack, temporal_ui: TemporalUi) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "30"})
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})
    run_id = (await handle.describe()).run_id
    ui = temporal_ui.ui_url
    queue = f'PayoutStatus="MANUAL_REVIEW" AND ReceiptId="{view.receipt_id}"'
    async with asyncio.timeout(WAIT):  # visibility catches up first, so the list page shows it on load
        while [w.id async for w in stack.client.list_workflows(queue)] != [handle.id]:
            await asyncio.sleep(0.2)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            # The manual queue, as an operator lists it in the UI.
            await page.goto(f"{ui}/namespaces/default/workflows?query={quote(queue)}")
            await page.get_by_text(handle.id).first.wait_for(timeout=WAIT * 1000)

            await page.goto(f"{ui}/namespaces/default/workflows/{handle.id}/{run_id}/history")
            await page.get_by_test_id("user-metadata-tab").click(timeout=WAIT * 1000)
            details = await rendered_text(page, ui, "Escalation reason")
            summary = await rendered_text(page, ui, f"Receipt {view.receipt_id}")
        finally:
            await browser.close()

    assert "MANUAL_REVIEW" in details and "permanent_error:30" in details
    assert str(view.bill_id) in details
    assert "Operator can do now" in details and "retry" in details and "cancel" in details
    assert "25.00 UAH" in summary and "+380•••••67" in summary
    assert TEST_PHONE not in details + summary
