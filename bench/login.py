"""How long a failed sign-in takes for each kind of failure (issue 12, item 5): unknown name,
wrong password, disabled account, and a right password; the times should be alike, so
they tell nobody which names exist. Prints the median and spread of `accounts.authenticate`
over a fresh SQLite database (or FACETRAIL_DATABASE_URL).

    .venv/bin/python bench/login.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from facetrail.config import Settings
from facetrail.governance import accounts
from facetrail.store import Database

PASSWORD = "correct horse battery"


def main(rounds: int = 20) -> None:
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="facetrail-bench-login-")))
    db = Database(settings.db_url)
    admin = accounts.Actor("bench", "admin", "bench")
    with db.session() as session, session.begin():
        for name in ("alice", "gone"):
            user, one_time = accounts.create_user(session, None, name, "investigator")
            accounts.change_password(session, user, one_time, PASSWORD)
        accounts.set_disabled(session, admin, "gone", True)
    cases = {
        "unknown name": ("nobody", PASSWORD),
        "wrong password": ("alice", "not the password"),
        "disabled account": ("gone", PASSWORD),
        "right password": ("alice", PASSWORD),
    }
    times: dict[str, list[float]] = {case: [] for case in cases}
    for n in range(rounds):
        for case, (name, password) in cases.items():
            client = f"10.{n // 250}.{n % 250}.{list(cases).index(case)}"  # a fresh address: never throttled
            with db.session() as session:
                start = time.perf_counter()
                try:
                    accounts.authenticate(session, name, password, "bench", client)
                except accounts.Refused:
                    pass
                times[case].append(time.perf_counter() - start)
                session.rollback()  # keep the log empty, so no rule ever applies
    print(f"accounts.authenticate, {rounds} rounds ({settings.db_url.split(':')[0]}):")
    for case, spent in times.items():
        spent_ms = sorted(t * 1000 for t in spent)
        print(f"  {case:17s} median {statistics.median(spent_ms):6.1f} ms"
              f"  p10 {spent_ms[len(spent_ms) // 10]:6.1f}  p90 {spent_ms[len(spent_ms) * 9 // 10]:6.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
