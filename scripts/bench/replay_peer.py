"""The seeds' job on a recording, in the seeds' stack, for the peak-memory row of
docs/benchmarks.md (bench_peak_rss): read an NDJSON recording of contract 004 quotes line by line
(streamed, like the worker's replay source), validate each with the pydantic v2 model of
e2e_pipeline.py, PUBLISH it to Redis (redis-py, one PUBLISH per quote, the seeds' way) and insert
it into PostgreSQL idempotently (psycopg executemany INSERT ... ON CONFLICT DO NOTHING, one
transaction per batch of --batch quotes). As fast as it goes.

Prints one JSON object: {"seconds", "quotes", "peak_rss_kib"}, the peak resident set being the
kernel's VmHWM of this process (what the harness reads for the worker too). A measurement, not a
test.
"""

import argparse
import json
import re
import time

from e2e_pipeline import COLUMNS, Quote


def peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise SystemExit("no VmHWM in /proc/self/status")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--file", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--channel", default="quotes.realtime")
    p.add_argument("--dsn", required=True)
    p.add_argument("--table", default="quotes.real_time")
    p.add_argument("--batch", type=int, default=500)
    a = p.parse_args()
    if not re.fullmatch(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*", a.table):
        raise SystemExit(f"--table {a.table!r} is not schema.table")

    import psycopg
    import redis

    r = redis.Redis.from_url(a.redis_url)
    r.ping()
    db = psycopg.connect(a.dsn)
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    insert = (f"INSERT INTO {a.table} ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
              "ON CONFLICT (symbol, \"timestamp\") DO NOTHING")

    def flush(rows: list) -> None:
        with db.cursor() as cur:
            cur.executemany(insert, rows)
        db.commit()

    started = time.perf_counter()
    sent, rows = 0, []
    with open(a.file) as f:
        for line in f:
            if not line.strip():
                continue
            q = Quote.model_validate_json(line)
            r.publish(a.channel, q.wire())
            rows.append(q.row())
            sent += 1
            if len(rows) >= a.batch:
                flush(rows)
                rows = []
    if rows:
        flush(rows)
    seconds = time.perf_counter() - started
    stored = db.execute(f"SELECT count(*) FROM {a.table}").fetchone()[0]
    if stored != sent:
        raise SystemExit(f"{stored} rows stored of {sent} sent")
    print(json.dumps({"seconds": seconds, "quotes": sent, "peak_rss_kib": peak_rss_kib()}))


if __name__ == "__main__":
    main()
