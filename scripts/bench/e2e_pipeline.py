"""A Python pipeline in the seeds' stack, for docs/benchmarks.md: pydantic v2 validation, then
redis-py PUBLISH to the contract channel and, with --dsn, psycopg writes into the table the
worker's migrations created. bench_e2e runs it against the same servers as the Rust workers.

Quotes are built beforehand as the dicts a Python source hands over (untimed); the timed part
validates and sends them in batches of one poll (every ticker once). Two styles:

- seed:  the seeds' way: one PUBLISH per quote; one executemany INSERT ... ON CONFLICT DO
         NOTHING per batch.
- tuned: the same libraries used well: pipelines of 1000 PUBLISH (no MULTI); COPY into a
         temporary staging table + INSERT ... SELECT ... ON CONFLICT DO NOTHING per 5000 rows,
         the Rust sink's strategy.

Prints one JSON object: {"seconds", "cpu_seconds", "quotes"}. A measurement, not a test.
"""

import argparse
import json
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

T0 = datetime(2026, 1, 20, 14, 30, 15, 123000, tzinfo=timezone.utc)
COLUMNS = ("symbol", "timestamp", "price", "volume", "bid", "ask", "open", "high", "low", "source")


class Quote(BaseModel):
    """The contract's quote with the validation every quote gets before it is sent."""

    model_config = ConfigDict(frozen=True)

    ticker: str = Field(pattern=r"^[A-Z]{1,5}(\.[A-Z])?$")
    timestamp: datetime
    price: float = Field(gt=0, allow_inf_nan=False)
    volume: int = Field(ge=0)
    bid: Optional[float] = Field(default=None, gt=0, allow_inf_nan=False)
    ask: Optional[float] = Field(default=None, gt=0, allow_inf_nan=False)
    open: Optional[float] = Field(default=None, gt=0, allow_inf_nan=False)
    high: Optional[float] = Field(default=None, gt=0, allow_inf_nan=False)
    low: Optional[float] = Field(default=None, gt=0, allow_inf_nan=False)
    source: str

    @field_validator("timestamp")
    @classmethod
    def utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() != timedelta(0):
            raise ValueError("timestamp must be UTC")
        return v

    @model_validator(mode="after")
    def book(self) -> "Quote":
        if self.bid is not None and self.ask is not None and self.bid > self.ask:
            raise ValueError("bid above ask")
        if self.high is not None and self.low is not None and self.high < self.low:
            raise ValueError("high below low")
        return self

    def wire(self) -> bytes:
        """Contract 004 JSON: ISO 8601 UTC with milliseconds and Z."""
        ts = self.timestamp
        msg = {
            "ticker": self.ticker,
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "price": self.price,
            "volume": self.volume,
            "bid": self.bid,
            "ask": self.ask,
            "source": self.source,
        }
        return json.dumps(msg, separators=(",", ":")).encode()

    def row(self) -> tuple:
        return (self.ticker, self.timestamp, self.price, self.volume, self.bid, self.ask,
                self.open, self.high, self.low, self.source)


def symbol(i: int) -> str:
    n = 3 if i < 17_576 else 4
    return "".join(chr(ord("A") + i // 26**k % 26) for k in reversed(range(n)))


def build(tickers: int, quotes: int) -> list[dict]:
    """The same shape of quotes as bench_common::quote: one per ticker per second."""
    names = [symbol(i) for i in range(tickers)]
    out = []
    for seq in range(quotes):
        cents = 10_000 + (seq % 997) * 7
        price = cents / 100
        out.append({
            "ticker": names[seq % tickers],
            "timestamp": T0 + timedelta(seconds=seq // tickers),
            "price": price,
            "volume": 40_000_000 + seq,
            "bid": (cents - 1) / 100,
            "ask": (cents + 1) / 100,
            "open": price - 0.5,
            "high": price + 1.0,
            "low": price - 1.0,
            "source": "synthetic",
        })
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--channel", default="quotes.realtime")
    p.add_argument("--dsn")
    p.add_argument("--table", default="quotes.real_time")
    p.add_argument("--tickers", type=int, required=True)
    p.add_argument("--quotes", type=int, required=True)
    p.add_argument("--style", choices=["seed", "tuned"], required=True)
    a = p.parse_args()
    if not re.fullmatch(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*", a.table):
        raise SystemExit(f"--table {a.table!r} is not schema.table")

    import redis

    r = redis.Redis.from_url(a.redis_url)
    r.ping()
    db = None
    if a.dsn:
        import psycopg

        db = psycopg.connect(a.dsn)
        if a.style == "tuned":
            db.execute(
                f"CREATE TEMP TABLE stage (LIKE {a.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            db.commit()
    raw = build(a.tickers, a.quotes)
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    insert = (f"INSERT INTO {a.table} ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
              "ON CONFLICT (symbol, \"timestamp\") DO NOTHING")
    batch = a.tickers if a.style == "seed" else 5000

    wall0, cpu0 = time.perf_counter(), time.process_time()
    sent = 0
    for start in range(0, len(raw), batch):
        quotes = [Quote.model_validate(d) for d in raw[start:start + batch]]
        if a.style == "seed":
            for q in quotes:
                r.publish(a.channel, q.wire())
            if db is not None:
                with db.cursor() as cur:
                    cur.executemany(insert, [q.row() for q in quotes])
                db.commit()
        else:
            for i in range(0, len(quotes), 1000):
                pipe = r.pipeline(transaction=False)
                for q in quotes[i:i + 1000]:
                    pipe.publish(a.channel, q.wire())
                pipe.execute()
            if db is not None:
                with db.cursor() as cur:
                    with cur.copy(f"COPY stage ({cols}) FROM STDIN") as copy:
                        for q in quotes:
                            copy.write_row(q.row())
                    cur.execute(
                        f"INSERT INTO {a.table} ({cols}) SELECT {cols} FROM stage "
                        "ON CONFLICT (symbol, \"timestamp\") DO NOTHING"
                    )
                db.commit()
        sent += len(quotes)
    seconds, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if db is not None:
        stored = db.execute(f"SELECT count(*) FROM {a.table}").fetchone()[0]
        if stored != sent:
            raise SystemExit(f"{stored} rows stored of {sent} sent")
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "quotes": sent}))


if __name__ == "__main__":
    main()
