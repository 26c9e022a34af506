"""Who acts at the command line, attacked from the side doors: `--as NAME` alone, FACETRAIL_USER,
$USER/$LOGNAME, a binding for someone else's login, wrong and one-time passwords, a token of another
account; the operating-system login in every entry; `init`; the last admin; token lifetimes; and
user-supplied text that tries to style, clear, retitle or hyperlink a supervisor's terminal."""

from __future__ import annotations

import os
import pty
import pwd
import re
import select
import subprocess
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select as query
from sqlalchemy import event, update
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.governance import accounts
from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.search import Searcher
from facetrail.store import ApiToken, Approval, AuditEntry, Database, User

from .support import PASSWORD, ROOT, add_accounts, cli_base, investigator, open_case, photo_of

runner = CliRunner()
LOGIN = pwd.getpwuid(os.getuid()).pw_name  # the real login of whoever runs the tests
INJECTION = "[bold red]APPROVED BY DPO[/] \x1b[2J\x1b]0;pwned\x07"
LINK = "[link=http://x]y[/link]"
FACETRAIL = str(ROOT / ".venv" / "bin" / "facetrail")


def cli(settings, *args, input=None, env=None):
    return runner.invoke(app, [*cli_base(settings), *args], input=input, env=env, catch_exceptions=False)


def token(dev_index, user):
    return ["--token", dev_index.tokens[user]]


def pending_search(dev_index, engine, dev_images, justification="identity test", case="ID-1") -> Approval:
    """A search by ivan held for prior approval; returns its approval."""
    settings = dev_index.settings.model_copy(update={"approval_policy": {"investigator": "prior"}})
    searcher = Searcher(settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine)
    open_case(dev_index.db, case, purpose="authorised-investigation")
    result = searcher.search(photo_of(dev_images, "keanu_reeves").read_bytes(), actor=investigator(),
                             purpose="authorised-investigation", justification=justification, case_ref=case)
    assert result.approval["state"] == "pending"
    with dev_index.db.session() as session:
        return session.get(Approval, result.approval["id"])


def state_of(dev_index, approval_id) -> str:
    with dev_index.db.session() as session:
        return session.get(Approval, approval_id).state


def entries(db, action, **details):
    with db.session() as session:
        found = session.scalars(query(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()
    return [e for e in found if all(e.details.get(k) == v for k, v in details.items())]


@pytest.fixture
def approval(dev_index, engine, dev_images):
    return pending_search(dev_index, engine, dev_images)


# --- --as NAME needs proof ------------------------------------------------------------------------


def test_a_name_alone_approves_nothing(dev_index, approval):
    for attempt in (["--as", "sue"], []):  # the option, or FACETRAIL_USER in the environment
        env = {"FACETRAIL_USER": "sue"} if not attempt else None
        refused = cli(dev_index.settings, *attempt, "approve", str(approval.id), "--reason", "ok", env=env)
        assert refused.exit_code == 2
        assert "needs proof" in refused.output and "--password-stdin" in refused.output
        assert f"bind-os-user sue {LOGIN}" in refused.output  # says how to prove it
    assert state_of(dev_index, approval.id) == "pending"
    assert not entries(dev_index.db, "search.approve", approval_id=approval.id)


def test_a_binding_for_another_login_and_a_spoofed_environment_prove_nothing(dev_index, approval):
    bound = cli(dev_index.settings, *token(dev_index, "ada"), "user", "bind-os-user", "sue", "mallory")
    assert bound.exit_code == 0, bound.output
    try:  # $USER, $LOGNAME and FACETRAIL_USER all say mallory/sue; the real uid does not
        env = {"USER": "mallory", "LOGNAME": "mallory", "USERNAME": "mallory", "FACETRAIL_USER": "sue"}
        refused = cli(dev_index.settings, "approve", str(approval.id), "--reason", "ok", env=env)
        assert refused.exit_code == 2 and "needs proof" in refused.output
        assert state_of(dev_index, approval.id) == "pending"
    finally:
        cli(dev_index.settings, *token(dev_index, "ada"), "user", "unbind-os-user", "sue", "mallory")


def test_a_binding_to_the_real_login_proves_that_account_only(dev_index, approval):
    admin = token(dev_index, "ada")
    assert cli(dev_index.settings, "--as", "sue", "user", "bind-os-user", "sue", LOGIN).exit_code == 2  # not by sue
    assert cli(dev_index.settings, *admin, "user", "bind-os-user", "sue", LOGIN).exit_code == 0
    try:
        listed = cli(dev_index.settings, *admin, "user", "list", env={"COLUMNS": "200"}).stdout
        assert re.search(rf"sue .*{re.escape(LOGIN)}", listed)
        twice = cli(dev_index.settings, *admin, "user", "bind-os-user", "iris", LOGIN)
        assert twice.exit_code == 2 and "bound to 'sue' already" in twice.output  # one login, one account
        assert cli(dev_index.settings, "--as", "ivan", "approvals").exit_code == 2  # the login is sue's only
        decided = cli(dev_index.settings, "--as", "sue", "approve", str(approval.id), "--reason", "ok")
        assert decided.exit_code == 0, decided.output
        [entry] = entries(dev_index.db, "search.approve", approval_id=approval.id)
        assert (entry.actor, entry.details["via"], entry.details["os_user"]) == ("sue", "cli", LOGIN)
        assert entries(dev_index.db, "user.bind_os_login", user="sue", login=LOGIN)[-1].actor == "ada"
    finally:
        assert cli(dev_index.settings, *admin, "user", "unbind-os-user", "sue", LOGIN).exit_code == 0
    assert cli(dev_index.settings, "--as", "sue", "approvals").exit_code == 2  # unbound: proof needed again


def test_a_wrong_password_is_refused_and_counted_the_right_one_acts(dev_index, approval):
    wrong = cli(dev_index.settings, "--as", "sue", "--password-stdin", "approve", str(approval.id), "--reason", "ok",
                input="not the password\n")
    assert wrong.exit_code == 2 and "wrong username or password" in wrong.output
    assert state_of(dev_index, approval.id) == "pending"
    failed = entries(dev_index.db, "login.failed", user="sue", via="cli")
    assert failed and failed[-1].details["client"] == f"local:{LOGIN}"  # a failed login, naming the OS login
    right = cli(dev_index.settings, "--as", "sue", "--password-stdin", "approve", str(approval.id), "--reason", "ok",
                input=PASSWORD + "\n")
    assert right.exit_code == 0, right.output
    [entry] = entries(dev_index.db, "search.approve", approval_id=approval.id)
    assert (entry.actor, entry.details["os_user"]) == ("sue", LOGIN)
    assert entries(dev_index.db, "login", user="sue")[-1].details["via"] == "cli"


def test_a_token_proves_its_own_account_only(dev_index, approval):
    other = cli(dev_index.settings, *token(dev_index, "ivan"), "--as", "sue", "approve", str(approval.id),
                "--reason", "ok")
    assert other.exit_code == 2 and "not 'sue'" in other.output
    assert state_of(dev_index, approval.id) == "pending"
    own = cli(dev_index.settings, *token(dev_index, "sue"), "deny", str(approval.id), "--reason", "no basis",
              env={"USER": "mallory", "LOGNAME": "mallory"})
    assert own.exit_code == 0, own.output
    [entry] = entries(dev_index.db, "search.deny", approval_id=approval.id)
    assert entry.details["os_user"] == LOGIN  # the real login, whatever the environment says


def test_a_confirmation_records_the_os_login(dev_index, engine, dev_images):
    found = Searcher(dev_index.settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine).search(
        photo_of(dev_images, "will_smith").read_bytes(), actor=Actor("sue", "supervisor", "test"),
        purpose="source-verification", justification="identity test", case_ref="T-1")
    face = found.results[0].face_id
    done = cli(dev_index.settings, *token(dev_index, "sue"), "confirm", str(found.audit_id), str(face),
               env={"USER": "mallory"})
    assert done.exit_code == 0, done.output
    entry = entries(dev_index.db, "match.confirm", search_id=found.audit_id)[-1]
    assert (entry.actor, entry.details["via"], entry.details["os_user"]) == ("sue", "cli", LOGIN)


def test_a_one_time_password_proves_nothing_until_changed(dev_index):
    made = cli(dev_index.settings, *token(dev_index, "ada"), "user", "add", "nina", "--role", "supervisor")
    one_time = made.stdout.split()[-1]
    refused = cli(dev_index.settings, "--as", "nina", "--password-stdin", "approvals", input=one_time + "\n")
    assert refused.exit_code == 2 and "one-time password" in refused.output
    new = "nina's own long password"
    mismatch = cli(dev_index.settings, "--as", "nina", "--password-stdin", "password",
                   input=f"{one_time}\n{new}\nsomething else\n")
    assert mismatch.exit_code == 2 and "differ" in mismatch.output
    changed = cli(dev_index.settings, "--as", "nina", "--password-stdin", "password", input=f"{one_time}\n{new}\n{new}\n")
    assert changed.exit_code == 0, changed.output
    entry = entries(dev_index.db, "user.change_password", user="nina")[-1]
    assert (entry.details["via"], entry.details["os_user"]) == ("cli", LOGIN)
    assert cli(dev_index.settings, "--as", "nina", "--password-stdin", "approvals", input=new + "\n").exit_code == 0
    assert cli(dev_index.settings, "--as", "nina", "--password-stdin", "approvals",
               input=one_time + "\n").exit_code == 2  # the one-time password is gone


def test_the_password_is_asked_at_a_terminal_and_not_echoed(dev_index):
    """The real command in a pseudo-terminal, as a person runs it: asked, typed, not shown."""
    env = {**os.environ, "FACETRAIL_DATA_DIR": str(dev_index.settings.data_dir), "COLUMNS": "200"}
    env.pop("FACETRAIL_TOKEN", None)
    if dev_index.settings.database_url:
        env["FACETRAIL_DATABASE_URL"] = dev_index.settings.database_url
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling terminal, as for a person at a shell
        os.execve(FACETRAIL, [FACETRAIL, "--as", "sue", "approvals"], env)
    seen = b""
    typed = False
    while True:
        ready, _, _ = select.select([fd], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child has exited
            break
        if not chunk:
            break
        seen += chunk
        if not typed and b"Password for sue:" in seen:
            os.write(fd, PASSWORD.encode() + b"\n")
            typed = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = seen.decode(errors="replace")
    assert typed, text
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "justification" in text  # the approvals table
    assert PASSWORD not in text  # not echoed


# --- init and the local operator ------------------------------------------------------------------


def test_init_on_an_empty_database_only_records_the_local_login_and_gives_a_token(settings):
    first = cli(settings, "init", "root", "--token")
    assert first.exit_code == 0, first.output
    secret = re.search(r"(ft_\S+)", first.stdout).group(1)
    again = cli(settings, "init", "other", "--token")
    assert again.exit_code == 2 and "accounts exist already" in again.output
    assert cli(settings, "--token", secret, "user", "add", "ivan", "--role", "investigator").exit_code == 0
    db = Database(settings.db_url)
    created = entries(db, "user.create", user="root")[0]
    assert (created.actor, created.details["os_user"]) == (f"local:{LOGIN}", LOGIN)
    assert entries(db, "token.create", user="root")[0].actor == f"local:{LOGIN}"
    added = entries(db, "user.create", user="ivan")[0]
    assert (added.actor, added.details["os_user"]) == ("root", LOGIN)


def test_only_declaring_and_ingesting_act_as_the_local_login(settings, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    declared = cli(settings, "source", "add", "press", "--kind", "folder", "--path", str(folder),
                   "--legal-basis", "our own press photos, published by us", env={"USER": "mallory"})
    assert declared.exit_code == 0, declared.output
    entry = entries(Database(settings.db_url), "source.add", source="press")[0]
    assert (entry.actor, entry.details["os_user"]) == (f"local:{LOGIN}", LOGIN)
    for command in (["source", "suspend", "press"], ["source", "remove", "press", "--yes"]):
        refused = cli(settings, *command)
        assert refused.exit_code == 2 and "who is acting" in refused.output
    assert "active" in cli(settings, "source", "list").stdout


# --- the last admin ---------------------------------------------------------------------------


def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(settings):
    db = Database(settings.db_url)
    tokens = add_accounts(db)
    ada = ["--token", tokens["ada"]]
    for command in (["user", "set-role", "ada", "supervisor"], ["user", "disable", "ada"]):
        refused = cli(settings, *ada, *command)
        assert refused.exit_code == 2 and "last enabled admin" in refused.output
    assert cli(settings, *ada, "user", "set-role", "otto", "admin").exit_code == 0
    assert cli(settings, *ada, "user", "disable", "otto").exit_code == 0  # a disabled admin manages nothing:
    assert cli(settings, *ada, "user", "set-role", "ada", "auditor").exit_code == 2  # ada is still the last
    assert cli(settings, *ada, "user", "enable", "otto").exit_code == 0
    assert cli(settings, *ada, "user", "set-role", "ada", "auditor").exit_code == 0  # now otto remains
    with db.session() as session:
        roles = dict(session.execute(query(User.username, User.role)).all())
    assert (roles["ada"], roles["otto"]) == ("auditor", "admin")


def test_two_admins_demoting_each_other_at_once_leave_one(settings):
    db = Database(settings.db_url)
    add_accounts(db)
    with db.session() as session, session.begin():
        accounts.set_role(session, Actor("ada", "admin", "test"), "otto", "admin")
    first = db.session()
    first.begin()
    accounts.set_role(first, Actor("ada", "admin", "test"), "otto", "auditor")  # not committed yet
    outcome = {}

    def second() -> None:
        try:
            with db.session() as session, session.begin():
                accounts.set_role(session, Actor("otto", "admin", "test"), "ada", "auditor")
            outcome["second"] = "done"
        except accounts.AccountError as exc:
            outcome["second"] = str(exc)
        except OperationalError as exc:  # SQLite refuses a write that raced a committed one
            outcome["second"] = f"failed: {type(exc).__name__}"

    racer = threading.Thread(target=second)
    waiting = threading.Event()  # set when the racer sends its first locking statement

    def watch(_conn, _cursor, statement, *_args) -> None:
        if threading.current_thread() is racer and "UPDATE" in statement.upper():
            waiting.set()

    event.listen(db.engine, "before_cursor_execute", watch)
    try:
        racer.start()
        assert waiting.wait(30)  # the racer has read what it reads unlocked and now waits for the lock
        first.commit()
        first.close()
        racer.join()
    finally:
        event.remove(db.engine, "before_cursor_execute", watch)
    with db.session() as session:
        admins = session.scalars(query(User.username).where(User.role == "admin", User.disabled.is_(False))).all()
    assert admins == ["ada"], outcome


# --- token lifetimes ------------------------------------------------------------------------------


def test_token_days_are_1_to_3650_or_0_for_never_and_expired_tokens_are_listed_as_expired(settings):
    db = Database(settings.db_url)
    ada = ["--token", add_accounts(db)["ada"]]
    for days in ("-1", "3651"):
        refused = cli(settings, *ada, "token", "create", "--user", "ivan", "--name", f"bad{days}", "--days", days)
        assert refused.exit_code == 2 and "1 to 3650 days" in refused.output
    for days in ("1", "3650", "0"):
        assert cli(settings, *ada, "token", "create", "--user", "ivan", "--name", f"ok{days}", "--days", days).exit_code == 0
    with db.session() as session, session.begin():
        assert session.scalar(query(ApiToken.expires_at).where(ApiToken.name == "ok0")) is None
        session.execute(update(ApiToken).where(ApiToken.name == "ok1")
                        .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
        revoked = session.scalar(query(ApiToken.id).where(ApiToken.name == "ok3650"))
    assert cli(settings, *ada, "token", "revoke", str(revoked)).exit_code == 0
    listed = cli(settings, *ada, "token", "list", env={"COLUMNS": "200"}).stdout
    status = {m.group(1): m.group(2) for m in re.finditer(r"(ok\d+|bad\S+)\s.*?(active|expired|revoked)\s", listed)}
    assert status == {"ok1": "expired", "ok3650": "revoked", "ok0": "active"}, listed


# --- terminal injection ---------------------------------------------------------------------------


def assert_inert(output: str) -> None:
    """No byte of the injected escapes reaches the terminal; the text is shown as written."""
    assert "\x1b[2J" not in output and "\x1b]" not in output and "\x07" not in output
    assert "APPROVED BY DPO" in output and "[bold red]APPROVED BY DPO[/]" in output
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in output


def test_injected_text_in_an_approval_is_shown_literally(dev_index, engine, dev_images):
    # a case reference is plain by construction (letters, digits, . _ / : -): the markup rides in the justification
    approval = pending_search(dev_index, engine, dev_images, justification=f"{INJECTION} {LINK}")
    shown = cli(dev_index.settings, *token(dev_index, "sue"), "approvals", env={"COLUMNS": "1000"})
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output  # not a terminal: no escape at all
    assert_inert(shown.output)
    assert LINK in shown.output
    [line] = [line for line in shown.output.splitlines() if "APPROVED BY DPO" in line]
    assert LINK in line and re.search(rf"\b{approval.id}\b", line)  # one row: no newline sneaks a fake row in

    # the real command on a terminal-like output, with colours forced: Rich styles its own text only
    env = {**os.environ, "FACETRAIL_DATA_DIR": str(dev_index.settings.data_dir), "FORCE_COLOR": "1",
           "COLUMNS": "1000", "FACETRAIL_TOKEN": dev_index.tokens["sue"]}
    if dev_index.settings.database_url:
        env["FACETRAIL_DATABASE_URL"] = dev_index.settings.database_url
    coloured = subprocess.run([FACETRAIL, "approvals"], env=env, capture_output=True, text=True, check=True).stdout
    assert "\x1b[" in coloured  # styles are on
    assert "\x1b[2J" not in coloured and "\x1b]" not in coloured and "\x07" not in coloured  # no clear, title, link
    text = re.sub(r"\x1b\[[0-9;]*m", "", coloured)  # without Rich's own styles, the markup is still text:
    assert_inert(text)  # "[bold red]" was shown, not obeyed
    assert LINK in text


def test_injected_names_in_listings_refusals_and_the_audit_export_are_inert(settings):
    db = Database(settings.db_url)
    ada = ["--token", add_accounts(db)["ada"]]
    assert cli(settings, *ada, "token", "create", "--user", "ivan", "--name", INJECTION).exit_code == 0
    tokens = cli(settings, *ada, "token", "list", env={"COLUMNS": "1000"})
    assert_inert(tokens.output)
    declared = cli(settings, *ada, "source", "add", "press", "--kind", "folder", "--path", str(settings.data_dir),
                   "--legal-basis", f"{INJECTION} {LINK} published by us")
    assert declared.exit_code == 0, declared.output
    for listing in (cli(settings, "source", "list", env={"COLUMNS": "1000"}), cli(settings, "source", "show", "press")):
        assert_inert(listing.output)
        assert LINK in listing.output
    refused = cli(settings, "--as", f"{LINK}\x1b[2J", "approvals")
    assert refused.exit_code == 2 and LINK in refused.output and "\x1b" not in refused.output
    exported = cli(settings, *ada, "audit", "export")
    assert exported.exit_code == 0
    assert "\x1b" not in exported.stdout and "\x07" not in exported.stdout and "\\u001b[2J" in exported.stdout


def test_entries_the_system_writes_from_the_cli_name_the_os_login(settings):
    """settings.change (noticed by any command) and maintenance run without an account; their
    entries still say which operating-system login ran the command, whatever $USER claims."""
    assert cli(settings, "maintenance", env={"USER": "mallory", "LOGNAME": "mallory"}).exit_code == 0
    with Database(settings.db_url).session() as session:
        entries = session.scalars(query(AuditEntry).where(AuditEntry.action.in_(["settings.change", "maintenance"]))).all()
    assert {e.action for e in entries} == {"settings.change", "maintenance"}
    for entry in entries:
        assert entry.actor == "system" and entry.actor_kind == "system"
        assert entry.details["via"] == "cli" and entry.details["os_user"] == LOGIN != "mallory"
