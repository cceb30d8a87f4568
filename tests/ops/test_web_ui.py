"""The Temporal Web UI (2.54, from the dev server) shows an escalated payout at a glance: headless
Chromium opens its page and finds the summary and the current details under "User Metadata". An
operator's update that a validator refuses shows the validator's words in the "Send an Update" dialog
(which does not run the codec)."""

from __future__ import annotations

import asyncio
import os
import shutil
from urllib.parse import quote

import pytest
from playwright.async_api import Frame, Locator, Page, async_playwright

from payouts.names import UpdateName
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


async def send_update(page: Page, name: str, data: str) -> str:
    """Send an update through "More Actions" → "Send an Update"; the dialog's error text, once shown."""
    await page.get_by_role("button", name="More Actions").first.click(timeout=WAIT * 1000)
    await page.locator("[data-testid=update-button]:visible").click(timeout=WAIT * 1000)
    dialog = page.get_by_role("dialog", name="Send an Update")
    await dialog.get_by_test_id("update-select-button").click(timeout=WAIT * 1000)
    await dialog.get_by_role("option").filter(has_text=name).first.click(timeout=WAIT * 1000)
    await dialog.get_by_role("textbox", name="Data").click()
    await page.keyboard.press("Control+A")  # the dialog keeps what was typed last time
    await page.keyboard.insert_text(data)
    # The JSON editor reformats when it loses focus (the dialog grows), and a Submit click during that
    # can be lost: leave the editor first (a click on its hint), then click Submit until an answer shows.
    await dialog.get_by_text("Single JSON payload supported.").click()
    shown = ""
    async with asyncio.timeout(WAIT):
        while not shown:
            await dialog.get_by_test_id("confirm-modal-button").click(timeout=WAIT * 1000)
            for _ in range(20):
                shown = await alert_text(dialog)
                if shown:
                    break
                await asyncio.sleep(0.25)
    await dialog.get_by_test_id("cancel-modal-button").click(timeout=WAIT * 1000)
    return shown


async def alert_text(dialog: Locator) -> str:
    texts = [t.strip() for t in await dialog.get_by_role("alert").all_inner_texts()]
    return " ".join(t for t in texts if t)


async def test_a_refused_update_shows_the_validators_words_in_the_web_ui(stack: Stack, temporal_ui: TemporalUi) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "30"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    run_id = (await handle.describe()).run_id
    sent = {
        '{"operator": "", "reason": ""}': "missing: operator, reason",
        '{"operatr": "olena", "reason": "typo in a field name"}': "operatr: Extra inputs are not permitted",
    }

    shown: dict[str, str] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{temporal_ui.ui_url}/namespaces/default/workflows/{handle.id}/{run_id}/history")
            await page.get_by_text(handle.id).first.wait_for(timeout=WAIT * 1000)
            for data in sent:
                shown[data] = await send_update(page, UpdateName.CANCEL, data)
        finally:
            await browser.close()

    for data, expected in sent.items():
        assert expected in shown[data], (data, shown[data])
        assert "Encoded failure" not in shown[data]
    assert (await stack.view(handle)).status == S.MANUAL_REVIEW
    assert await stack.ledger.operator_actions.for_payout(handle.id) == []
