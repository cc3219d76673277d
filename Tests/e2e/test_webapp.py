"""The stock Open WebUI 0.12.4 web app, unmodified, driven in Debian's headless chromium against Skiff.

Playwright for Python (PyPI) launches `/usr/lib/chromium/chromium` (never `playwright install`). One stack with the
fake OpenAI-compatible provider; the flows run in order on one page, as a user would: onboarding, sign-up, the
models, a streamed reply saved across a reload, rename/pin/archive/unarchive, a text file attached and answered
from (checked at the provider), a knowledge base with a file, Settings > Account, Admin > Users, sign out and in.
Every API response is recorded: any 4xx/5xx fails the run (the real server gives none in these flows), and so
does an uncaught error in the page. A failed flow leaves a screenshot in .build/test-results/browser/.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
Page, Response, expect, sync_playwright = (playwright_api.Page, playwright_api.Response, playwright_api.expect,
                                           playwright_api.sync_playwright)

from fake_provider import FakeProvider  # noqa: E402
from stacklib import REPO, Stack  # noqa: E402

BASE_URL = ""  # the stack's gateway, set by the fixture
CHROMIUM = os.environ.get("SKIFF_CHROMIUM", "/usr/lib/chromium/chromium")
ARTIFACTS = REPO / ".build" / "test-results" / "browser"
if not (REPO / ".data" / "webui" / "frontend" / "index.html").exists() and not os.environ.get("FRONTEND_BUILD_DIR"):
    pytest.skip("no web app build (./scripts/test unpacks it into .data/webui)", allow_module_level=True)
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no chromium at {CHROMIUM} (./scripts/test installs Debian's)", allow_module_level=True)
# Playwright already passes --headless, --no-sandbox (chromium_sandbox defaults to False) and
# --disable-dev-shm-usage; nothing else is required on this machine (root, 2 cores).
LAUNCH_ARGS: list[str] = []
TIMEOUT_MS = int(os.environ.get("SKIFF_BROWSER_TIMEOUT_MS", "20000"))

ADMIN = {"name": "Admin User", "email": "admin@example.com", "password": "Sk1ff-browser-pw!"}
MODELS = ["fake-gpt", "fake-mini"]
REPLY = "Hello from fakeai."
SECRET = "PAPAYA-" + uuid.uuid4().hex[:6]


# --------------------------------------------------------------------------------------------
# Recorder: every /api, /ws, /ollama, /openai response, console errors, uncaught page errors,
# Socket.IO frames.  Flows assert on it ("no 4xx/5xx", "reply tokens came over the socket").
# --------------------------------------------------------------------------------------------
class Recorder:
    API_PREFIXES = ("/api/", "/ws/", "/ollama/", "/openai/")

    def __init__(self, page: Page) -> None:
        self.responses: list[tuple[int, str, str]] = []  # (status, method, path?query)
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.ws_frames: list[str] = []
        page.on("response", self._on_response)
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("websocket", self._on_ws)

    def _on_response(self, r: Response) -> None:
        path = r.url[len(BASE_URL):] if r.url.startswith(BASE_URL) else r.url
        if path.startswith(self.API_PREFIXES):
            self.responses.append((r.status, r.request.method, path))

    def _on_ws(self, ws) -> None:
        ws.on("framereceived", lambda payload: self.ws_frames.append(payload if isinstance(payload, str) else ""))

    def mark(self) -> tuple[int, int, int, int]:
        return len(self.responses), len(self.console_errors), len(self.page_errors), len(self.ws_frames)

    def api_errors_since(self, mark) -> list[tuple[int, str, str]]:
        return [r for r in self.responses[mark[0]:] if r[0] >= 400]

    def frames_since(self, mark, needle: str) -> list[str]:
        return [f for f in self.ws_frames[mark[3]:] if needle in f]


def is_api(method: str, pattern: str, status: int = 200):
    """Predicate for page.expect_response: METHOD + regex on the path (query included)."""
    rx = re.compile(pattern)

    def pred(r: Response) -> bool:
        path = r.url[len(BASE_URL):] if r.url.startswith(BASE_URL) else r.url
        return r.request.method == method and bool(rx.fullmatch(path)) and r.status == status

    return pred


# --------------------------------------------------------------------------------------------
# UI helpers (0.12.4 specifics)
# --------------------------------------------------------------------------------------------
def dismiss_changelog(page: Page) -> None:
    # After the first login a "What's New" modal opens; its button: "Okay, Let's Go!"
    # [spec:46] [src:lib/components/ChangelogModal.svelte:199]
    btn = page.get_by_role("button", name="Okay, Let's Go!")
    try:
        btn.wait_for(state="visible", timeout=4000)
        btn.click()
        btn.wait_for(state="hidden")
    except Exception:
        pass


def sidebar_collapsed(page: Page) -> bool:
    # Collapsed sidebar = icon rail, which is the only place with button[aria-label="User menu"]
    # [spec:47-50] [src:lib/components/layout/Sidebar.svelte:1072,1218]
    return page.locator('button[aria-label="User menu"]').count() > 0


def ensure_sidebar_open(page: Page) -> None:
    # Rail toggle: button[aria-label="Open Sidebar"] inside #sidebar [src:Sidebar.svelte:1074,1098]
    if sidebar_collapsed(page):
        page.locator('#sidebar button[aria-label="Open Sidebar"]').first.click()
        expect(page.locator('button[aria-label="User menu"]')).to_have_count(0)
    # The expanded sidebar's full list: SidebarSection id=sidebar-chats [src:Sidebar.svelte:1559]


def open_user_menu(page: Page) -> None:
    # rail: button[aria-label="User menu"]; expanded: the button holding
    # img[aria-label="Open User Profile Menu"]  [spec:49-50] [src:Sidebar.svelte:1218,1227,1933]
    if sidebar_collapsed(page):
        page.locator('button[aria-label="User menu"]').click()
    else:
        page.locator('button:has(img[aria-label="Open User Profile Menu"])').last.click()
    expect(page.get_by_role("menuitem", name="Settings")).to_be_visible()


def menu_item(page: Page, name: str):
    # Menu entries are <button role="menuitem"> / <a role="menuitem"> whose text is the label
    # [src:lib/components/layout/Sidebar/ChatMenu.svelte:412-526] [src:layout/Sidebar/UserMenu.svelte:555-616]
    return page.get_by_role("menuitem", name=name, exact=True)


def chat_item(page: Page, chat_id: str):
    # One sidebar row per chat: div#sidebar-chat-group[data-sidebar-chat-id=ID], link href=/c/ID
    # [src:lib/components/layout/Sidebar/ChatItem.svelte:640-641,751]
    # The container is <div id="sidebar" role="navigation" aria-label="Chat history"> (a div, not <nav>);
    # the id moves to whichever of rail / full sidebar is shown [src:layout/Sidebar.svelte:1075,1258]
    return page.locator(f'#sidebar [data-sidebar-chat-id="{chat_id}"]')


def open_chat_menu(page: Page, chat_id: str) -> None:
    # "..." button appears on hover: button[aria-label="Chat Menu"] [src:ChatItem.svelte:882] [js:nodes/2.*.js]
    item = chat_item(page, chat_id)
    item.hover()
    item.locator('button[aria-label="Chat Menu"]').click()
    expect(menu_item(page, "Rename")).to_be_visible()


def select_model(page: Page, model_id: str) -> None:
    # Model selector lives in the input bar: #model-selector-model-button [spec:47]
    # [src:lib/components/chat/ModelSelector/Selector.svelte:912 (id="model-selector-{id}-button"), ModelSelector.svelte:69 (id="model")]
    page.locator("#model-selector-model-button").click()
    # list: #model-selector-list [Selector.svelte:1096]; options: button[role=option][data-value=ID]
    # [src:chat/ModelSelector/ModelItem.svelte:57-77]
    page.locator(f'#model-selector-list [role="option"][data-value="{model_id}"]').click()
    expect(page.locator("#model-selector-model-button")).to_have_attribute(
        "aria-label", re.compile(r"Selected model: .*" + re.escape(model_id)))


def type_prompt_and_send(page: Page, text: str) -> None:
    # Prompt box: TipTap contenteditable #chat-input (role=textbox, aria-label = placeholder "Send a Message")
    # [src:lib/components/chat/MessageInput.svelte:2226,2251] [src:common/RichTextInput.svelte:1043-1047]
    box = page.locator("#chat-input")
    box.click()
    box.fill(text)
    # Send: #send-message-button (aria-label "Send message") [src:MessageInput.svelte:2934-2935]
    page.locator("#send-message-button").click()


def last_assistant(page: Page):
    # Messages: <ul role="log"> of <li role="listitem"> [src:chat/Messages.svelte:519] [src:chat/Messages/Message.svelte:66];
    # assistant content sits in div.chat-assistant [src:chat/Messages/ResponseMessage.svelte:725] (user: .chat-user)
    return page.locator('[role="log"] [role="listitem"]').filter(has=page.locator(".chat-assistant")).last


def wait_reply_done(page: Page) -> None:
    msg = last_assistant(page)
    expect(msg).to_contain_text(REPLY, timeout=TIMEOUT_MS)
    # action row (Copy, Regenerate...) only renders once message.done [ResponseMessage.svelte:984,1084,1487]
    expect(msg.get_by_role("button", name="Regenerate")).to_be_visible(timeout=TIMEOUT_MS)


def chat_id_from_url(page: Page) -> str:
    m = re.search(r"/c/([^/?#]+)", page.url)
    assert m, page.url
    return m.group(1)


# --------------------------------------------------------------------------------------------
# Flows.  Each takes the shared UI state; they must run in this order on a fresh server.
# --------------------------------------------------------------------------------------------
class UI:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.rec = Recorder(page)
        self.chat_id: str | None = None
        self.chat_title = "Renamed by Playwright"
        self.tmp = ARTIFACTS / "files"
        self.tmp.mkdir(parents=True, exist_ok=True)


def flow_first_visit_shows_onboarding(ui: UI) -> None:
    page = ui.page
    with page.expect_response(is_api("GET", r"/api/config")) as cfg:
        page.goto(BASE_URL + "/")
    assert cfg.value.json().get("onboarding") is True  # unauthenticated shape [spec:35-38]
    page.wait_for_url(re.compile(r".*/auth/?(\?.*)?$"))  # lands on /auth?redirect=%2F
    # OnBoarding screen: button aria-label "Get started" [src:lib/components/OnBoarding.svelte:93-100] [js:nodes/53.*.js]
    expect(page.get_by_role("button", name="Get started")).to_be_visible()


def flow_signup_admin(ui: UI) -> None:
    page = ui.page
    page.get_by_role("button", name="Get started").click()
    # Auth form ids: #name #email #password [src:routes/auth/+page.svelte:354,391,410]
    page.locator("#name").fill(ADMIN["name"])
    page.locator("#email").fill(ADMIN["email"])
    page.locator("#password").fill(ADMIN["password"])
    # Submit text while onboarding: "Create Admin Account" [src:routes/auth/+page.svelte:459-469]
    with page.expect_response(is_api("POST", r"/api/v1/auths/signup")) as r:
        page.get_by_role("button", name="Create Admin Account").click()
    assert r.value.json()["role"] == "admin"
    page.wait_for_url(lambda u: "/auth" not in u)
    dismiss_changelog(page)
    expect(page.locator("#chat-input")).to_be_visible()


def flow_chat_page_lists_provider_models(ui: UI) -> None:
    page = ui.page
    with page.expect_response(is_api("GET", r"/api/models\??.*")) as r:
        page.reload()
    ids = [m["id"] for m in r.value.json()["data"]]
    for mid in MODELS:
        assert mid in ids, ids
    dismiss_changelog(page)
    page.locator("#model-selector-model-button").click()
    listbox = page.locator("#model-selector-list")  # aria-label "Available models" [Selector.svelte:1096-1098]
    for mid in MODELS:
        expect(listbox.locator(f'[role="option"][data-value="{mid}"]')).to_be_visible()
    page.keyboard.press("Escape")


def flow_send_message_streams_and_persists(ui: UI) -> None:
    page, rec = ui.page, ui.rec
    select_model(page, "fake-gpt")
    mark = rec.mark()
    # First message = one POST /api/chat/completions; the server creates the chat [spec:22-28]
    with page.expect_response(is_api("POST", r"/api/chat/completions")) as r:
        type_prompt_and_send(page, "Hello from playwright")
    assert r.value.json().get("chat_id"), r.value.json()
    page.wait_for_url(re.compile(r".*/c/[^/]+$"))
    ui.chat_id = chat_id_from_url(page)
    expect(page.locator(".chat-user").last).to_contain_text("Hello from playwright")  # [UserMessage.svelte:210]
    wait_reply_done(page)
    # tokens arrived over Socket.IO as events/response:completion [spec:26-29]
    assert rec.frames_since(mark, '"response:completion"'), "no streamed completion frames"
    assert not rec.api_errors_since(mark), rec.api_errors_since(mark)
    # reload: chat is read back from GET /api/v1/chats/{id}
    with page.expect_response(is_api("GET", rf"/api/v1/chats/{ui.chat_id}")):
        page.reload()
    expect(page.locator(".chat-user").last).to_contain_text("Hello from playwright")
    expect(last_assistant(page)).to_contain_text(REPLY)


def flow_rename_chat(ui: UI) -> None:
    page = ui.page
    ensure_sidebar_open(page)
    expect(chat_item(page, ui.chat_id)).to_be_in_viewport()
    open_chat_menu(page, ui.chat_id)
    menu_item(page, "Rename").click()
    title_input = page.locator(f"#chat-title-input-{ui.chat_id}")  # [ChatItem.svelte:675]
    expect(title_input).to_be_focused()
    title_input.fill(ui.chat_title)
    with page.expect_response(is_api("POST", rf"/api/v1/chats/{ui.chat_id}")) as r:
        title_input.press("Enter")
    assert r.value.json()["title"] == ui.chat_title
    expect(chat_item(page, ui.chat_id).locator(f'a[href="/c/{ui.chat_id}"]')).to_contain_text(ui.chat_title)


def chat_menu_action(ui: UI, label: str, route: str) -> dict:
    """Chooses `label` in the chat's sidebar menu and returns the answer of the POST it makes to `route`."""
    open_chat_menu(ui.page, ui.chat_id)
    with ui.page.expect_response(is_api("POST", rf"/api/v1/chats/{ui.chat_id}/{route}")) as r:
        menu_item(ui.page, label).click()  # [ChatMenu.svelte:436-451, 497-512]
    return r.value.json()


def flow_pin_chat(ui: UI) -> None:
    page = ui.page
    assert chat_menu_action(ui, "Pin", "pin")["pinned"] is True
    # a "Pinned" folder now heads the list (Folder id=sidebar-pinned-chats renders no DOM id) [Sidebar.svelte:1667-1669]
    expect(page.locator("#sidebar").get_by_text("Pinned", exact=True)).to_be_visible()
    open_chat_menu(page, ui.chat_id)
    expect(menu_item(page, "Unpin")).to_be_visible()
    page.keyboard.press("Escape")


def flow_archive_chat(ui: UI) -> None:
    page = ui.page
    assert chat_menu_action(ui, "Archive", "archive")["archived"] is True
    expect(chat_item(page, ui.chat_id)).to_have_count(0)
    # archiving the open chat navigates to / [spec:50]
    page.wait_for_url(BASE_URL + "/")


def open_settings_tab(page: Page, tab_panel_id: str):
    open_user_menu(page)
    menu_item(page, "Settings").click()  # [UserMenu.svelte:575-598]
    dialog = page.get_by_role("dialog", name="Settings")  # Modal ariaLabel "Settings" [SettingsModal.svelte:549]
    expect(dialog).to_be_visible()
    # tabs: button[role=tab][aria-controls=tab-...] [SettingsModal.svelte:760-780]
    dialog.locator(f'button[role="tab"][aria-controls="{tab_panel_id}"]').click()
    expect(dialog.locator(f"#{tab_panel_id}")).to_be_visible()
    return dialog


def flow_unarchive_chat(ui: UI) -> None:
    page = ui.page
    # Settings > Archived Chats (tab-archived-chats) lists archived chats [src:chat/Settings/ArchivedChats.svelte:193,309-405]
    with page.expect_response(is_api("GET", r"/api/v1/chats/archived\?.*")):
        dialog = open_settings_tab(page, "tab-archived-chats")
    row = dialog.locator(f'[role="row"]:has(a[href="/c/{ui.chat_id}"])')
    expect(row).to_contain_text(ui.chat_title)
    with page.expect_response(is_api("POST", rf"/api/v1/chats/{ui.chat_id}/archive")) as r:
        row.locator('button[aria-label="Unarchive Chat"]').click()
    assert r.value.json()["archived"] is False
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    ensure_sidebar_open(page)
    expect(chat_item(page, ui.chat_id)).to_have_count(1)


def flow_attach_text_file_and_ask(ui: UI) -> None:
    page, rec = ui.page, ui.rec
    note = ui.tmp / "secret-note.txt"
    note.write_text(f"The secret word is {SECRET}.\n")
    page.goto(BASE_URL + "/")
    expect(page.locator("#chat-input")).to_be_visible()
    mark = rec.mark()
    # "+" button: #input-menu-button (aria-label "More") [src:MessageInput.svelte:2467-2469];
    # item "Upload Files" opens the hidden <input type=file multiple> [src:chat/MessageInput/InputMenu.svelte:198-213]
    page.locator("#input-menu-button").click()
    with page.expect_response(is_api("POST", r"/api/v1/files/\?process=true")) as up:
        with page.expect_file_chooser() as fc:
            menu_item(page, "Upload Files").click()
        fc.value.set_files(str(note))
    file_id = up.value.json()["id"]
    # chip with the file name above the prompt; remove button aria-label "Remove file" [MessageInput.svelte:2152]
    expect(page.locator("#chat-input-container").locator("..").locator("..").get_by_text("secret-note.txt")).to_be_visible()
    # wait until processing finished (client reads GET /api/v1/files/{id}/process/status?stream=true) [spec:73]
    page.wait_for_function(
        "() => !document.querySelector('#send-message-button')?.disabled", timeout=TIMEOUT_MS)
    with page.expect_response(is_api("POST", r"/api/chat/completions")) as r:
        type_prompt_and_send(page, "What is the secret word in the attached file?")
    body = r.value.request.post_data_json
    assert any(f.get("id") == file_id for f in body.get("files", [])), body.get("files")
    page.wait_for_url(re.compile(r".*/c/[^/]+$"))
    expect(page.locator(".chat-user").last).to_contain_text("secret-note.txt")
    wait_reply_done(page)
    assert not rec.api_errors_since(mark), rec.api_errors_since(mark)
    # The file's text reached the model in the prompt.
    asked = [json.dumps(r["body"]["messages"]) for r in ui.provider.chat_requests()
             if "What is the secret word" in json.dumps(r["body"].get("messages", [])) and r["body"].get("stream")]
    assert asked and SECRET in asked[-1], asked[-1:]


def flow_knowledge_create_and_add_file(ui: UI) -> None:
    page = ui.page
    doc = ui.tmp / "kb-doc.txt"
    doc.write_text("Skiff knowledge base document about papayas.\n")
    # /workspace/knowledge/create opens the create modal [spec:56-57] [src:routes/(app)/workspace/knowledge/create/+page.svelte]
    page.goto(BASE_URL + "/workspace/knowledge/create")
    page.get_by_placeholder("Name your knowledge base").fill("Browser KB")  # [CreateKnowledgeBase.svelte:120]
    page.get_by_placeholder("Describe your knowledge base and objectives").fill("made by the browser test")  # [:138]
    with page.expect_response(is_api("POST", r"/api/v1/knowledge/create")) as r:
        page.get_by_role("button", name="Create Knowledge").click()  # [:177-180]
    kb_id = r.value.json()["id"]
    page.wait_for_url(re.compile(rf".*/workspace/knowledge/{kb_id}$"))
    # name field of the collection page: aria-label "Knowledge Name" [src:workspace/Knowledge/KnowledgeBase.svelte:913]
    expect(page.get_by_label("Knowledge Name")).to_have_value("Browser KB")
    # "Add Content" (aria-label) > "Upload files" [src:workspace/Knowledge/KnowledgeBase/AddContentMenu.svelte:41,81]
    page.locator('button[aria-label="Add Content"]').click()
    with page.expect_response(is_api("POST", r"/api/v1/files/\??.*")) as up:
        with page.expect_file_chooser() as fc:
            # these entries are plain <button>s (no role=menuitem) [AddContentMenu.svelte:70-81]
            page.get_by_role("button", name="Upload files", exact=True).click()
        fc.value.set_files(str(doc))
    assert up.value.json()["filename"] == "kb-doc.txt"
    # (fallback without the menu: page.set_input_files("#files-input", doc) [KnowledgeBase.svelte:855])
    expect(page.locator("#collection-container").get_by_text("kb-doc.txt")).to_be_visible(timeout=TIMEOUT_MS)


def flow_settings_account(ui: UI) -> None:
    page = ui.page
    page.goto(BASE_URL + "/")
    dismiss_changelog(page)
    dialog = open_settings_tab(page, "tab-account")  # [src:chat/Settings/Account.svelte:241]
    # name input aria-label "Name" (settings.personal.account.name.label) [Account.svelte:272] [js:chunks/DH4-GtEv.js]
    expect(dialog.get_by_label("Name", exact=True)).to_have_value(ADMIN["name"])
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def flow_admin_users_lists_users(ui: UI) -> None:
    page = ui.page
    # /admin/users redirects to /admin/users/overview [src:routes/(app)/admin/users/+page.svelte]
    with page.expect_response(is_api("GET", r"/api/v1/users/\?page=1.*")) as r:
        page.goto(BASE_URL + "/admin/users")
    assert any(u["email"] == ADMIN["email"] for u in r.value.json()["users"])
    page.wait_for_url(re.compile(r".*/admin/users/overview$"))
    # table rows [src:lib/components/admin/Users/UserList.svelte:225]
    expect(page.locator("table tbody tr").filter(has_text=ADMIN["email"])).to_be_visible()


def flow_sign_out_and_in(ui: UI) -> None:
    page = ui.page
    page.goto(BASE_URL + "/")
    dismiss_changelog(page)
    open_user_menu(page)
    with page.expect_response(is_api("POST", r"/api/v1/auths/signout")):
        menu_item(page, "Sign Out").click()  # [UserMenu.svelte:601-616]
    page.wait_for_url(re.compile(r".*/auth/?(\?.*)?$"))
    page.locator("#email").fill(ADMIN["email"])
    page.locator("#password").fill(ADMIN["password"])
    with page.expect_response(is_api("POST", r"/api/v1/auths/signin")):
        page.get_by_role("button", name="Sign in", exact=True).click()  # [routes/auth/+page.svelte:459-466]
    page.wait_for_url(lambda u: "/auth" not in u)
    expect(page.locator("#chat-input")).to_be_visible()
    ensure_sidebar_open(page)
    expect(chat_item(page, ui.chat_id)).to_contain_text(ui.chat_title)


def flow_second_browser_sees_new_chat(ui: UI) -> None:
    """The same user in a second browser whose socket sits on the other realtime replica: a chat started in the
    first appears in the second's sidebar without a reload."""
    page = ui.page
    context = page.context.browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US", timezone_id="UTC")
    second = context.new_page()
    try:
        other = Recorder(second)
        replicas = set()
        for _ in range(6):
            second.goto(BASE_URL + "/auth")
            if "/auth" in second.url:
                second.locator("#email").fill(ADMIN["email"])
                second.locator("#password").fill(ADMIN["password"])
                second.get_by_role("button", name="Sign in", exact=True).click()
                second.wait_for_url(lambda u: "/auth" not in u)
            expect(second.locator("#chat-input")).to_be_visible()
            first_replica = socket_replica(ui.rec)
            deadline = time.monotonic() + 10
            while socket_replica(other) is None and time.monotonic() < deadline:
                second.wait_for_timeout(100)
            replicas = {first_replica, socket_replica(other)}
            if None not in replicas and len(replicas) == 2:
                break
            other.ws_frames.clear()
        assert len(replicas) == 2 and None not in replicas, f"both sockets on {replicas}"
        dismiss_changelog(second)
        ensure_sidebar_open(second)
        page.goto(BASE_URL + "/")
        expect(page.locator("#chat-input")).to_be_visible()
        select_model(page, "fake-gpt")
        with page.expect_response(is_api("POST", r"/api/chat/completions")) as r:
            type_prompt_and_send(page, "A chat the other browser should see")
        chat_id = r.value.json()["chat_id"]
        wait_reply_done(page)
        expect(chat_item(second, chat_id)).to_have_count(1, timeout=TIMEOUT_MS)
        assert not other.api_errors_since((0, 0, 0, 0)), other.api_errors_since((0, 0, 0, 0))
        assert not other.page_errors, other.page_errors
    finally:
        context.close()


def socket_replica(recorder: "Recorder") -> str | None:
    """The realtime replica of the page's Socket.IO session: the Engine.IO sid starts with the replica's id."""
    for frame in recorder.ws_frames:
        if frame.startswith('0{"sid":"'):
            return json.loads(frame[1:])["sid"][:4]
    return None


def flow_console_has_no_errors(ui: UI) -> None:
    assert not ui.rec.console_errors, ui.rec.console_errors
    assert not ui.rec.page_errors, ui.rec.page_errors


FLOWS = [
    flow_first_visit_shows_onboarding,
    flow_signup_admin,
    flow_chat_page_lists_provider_models,
    flow_send_message_streams_and_persists,
    flow_rename_chat,
    flow_pin_chat,
    flow_archive_chat,
    flow_unarchive_chat,
    flow_attach_text_file_and_ask,
    flow_knowledge_create_and_add_file,
    flow_settings_account,
    flow_admin_users_lists_users,
    flow_sign_out_and_in,
    flow_second_browser_sees_new_chat,
    flow_console_has_no_errors,
]


def open_browser(p):
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US",
                                  timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return browser, context.new_page()


@pytest.fixture(scope="module")
def ui():
    global BASE_URL
    with FakeProvider() as provider:
        stack = Stack(name="webapp", env={
            "ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": provider.base_url, "OPENAI_API_KEYS": "fake-key",
            "SKIFF_RATE_LIMIT_PER_MINUTE": "0", "SKIFF_REALTIME_REPLICA_ID": "rtA1"}).start()
        # A second realtime replica: the two-browser flow puts one browser's socket on each.
        stack.spawn_extra("realtime-b", "realtime", {"SKIFF_REALTIME_REPLICA_ID": "rtB2"})
        BASE_URL = stack.base.rstrip("/")
        try:
            with sync_playwright() as p:
                browser, page = open_browser(p)
                state = UI(page)
                state.provider = provider
                state.stack = stack
                state.failed = False
                yield state
                browser.close()
        finally:
            stack.stop()


def _make_test(flow):
    def test(ui):
        if ui.failed:
            pytest.skip("an earlier flow failed")
        mark = ui.rec.mark()
        try:
            flow(ui)
            assert not ui.rec.api_errors_since(mark), f"API errors: {ui.rec.api_errors_since(mark)}"
            assert not ui.rec.page_errors[mark[2]:], f"uncaught errors in the page: {ui.rec.page_errors[mark[2]:]}"
        except BaseException:
            ui.failed = True
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            ui.page.screenshot(path=str(ARTIFACTS / f"{flow.__name__}.png"), full_page=True)
            (ARTIFACTS / f"{flow.__name__}.txt").write_text(
                "responses:\n" + "\n".join(map(str, ui.rec.responses[mark[0]:])) + "\n\nconsole errors:\n"
                + "\n".join(ui.rec.console_errors[mark[1]:]))
            raise
    test.__name__ = "test_" + flow.__name__[len("flow_"):]
    return test


for _flow in FLOWS:
    globals()["test_" + _flow.__name__[len("flow_"):]] = _make_test(_flow)
