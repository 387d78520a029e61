"""The seeds' way of backfilling history, for the backfill benchmark (docs/benchmarks.md).

Seed 003 (the market data platform's roadmap) ingests historical bars of stocks, indices and
crypto with a Python ETL: an API client per vendor, pandas to normalise, SQLAlchemy models
(`MarketPrice`) and an idempotent insert. This peer does that against the same local Yahoo
chart server the benchmark gives `quotestream-worker backfill`
(tests/testkit/src/yahoo_chart.rs), the way a yfinance-style script does:

- one `GET /v8/finance/chart/{symbol}?period1&period2&interval` per symbol and window (Yahoo's
  limits: 1m in windows of at most 7 days; 1d in one request), one after another with a
  `requests` session (yfinance's client), retrying a 429 or 5xx after its Retry-After (1 s
  when none is given) so a throttled answer is not a lost window;
- the answer's parallel arrays into a pandas DataFrame indexed by UTC time
  (`pd.to_datetime(timestamp, unit="s", utc=True)`), rows with a null price dropped
  (`dropna`), a null volume as 0, rows outside [period1, period2) cut (Yahoo's live bar);
- the rows into the seed's `MarketPrice` model with SQLAlchemy's PostgreSQL `insert(...)
  .on_conflict_do_nothing()` (the seed's "inserción idempotente"), one statement per window
  (SQLAlchemy's executemany: multi-row INSERTs) and a commit per window, through psycopg2 (the
  seeds' driver).

Daily bars are stored at their UTC day (Yahoo stamps them at the exchange's open), the
minute bars at their minute, as quotestream files them, so the two tables compare row for row.

    python backfill_peer.py --base-url http://127.0.0.1:PORT \
        --database-url postgresql+psycopg2://postgres@127.0.0.1:5432/peer \
        --tickers-file F --from 2024-11-11 --to 2026-11-10 --interval 1d

Prints one JSON object: seconds, requests, bars (received and kept), nulls (dropped).
A measurement, not a test.
"""

import argparse
import json
import time
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import requests
from sqlalchemy import BigInteger, Column, Float, Text, create_engine
from sqlalchemy.dialects.postgresql import TIMESTAMP, insert
from sqlalchemy.orm import Session, declarative_base

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
# Yahoo's longest request per interval (the seeds' client chunks by it).
WINDOW = {"1m": timedelta(days=7), "1d": timedelta(days=3650)}

Base = declarative_base()


class MarketPrice(Base):
    """The seed's time series model: one bar per instrument, timeframe and time."""

    __tablename__ = "market_prices"

    symbol = Column(Text, primary_key=True)
    timeframe = Column(Text, primary_key=True)
    ts = Column(TIMESTAMP(timezone=True), primary_key=True)
    open = Column(Float, nullable=False)
    high = Column(Float, nullable=False)
    low = Column(Float, nullable=False)
    close = Column(Float, nullable=False)
    volume = Column(BigInteger, nullable=False)


def windows(first: date, last: date, interval: str):
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    while start < end:
        stop = min(start + WINDOW[interval], end)
        yield start, stop
        start = stop


def fetch(s: requests.Session, base: str, symbol: str, interval: str, p1: int, p2: int) -> dict:
    while True:
        r = s.get(
            f"{base}/v8/finance/chart/{symbol}",
            params={"period1": p1, "period2": p2, "interval": interval},
        )
        if r.status_code == 429 or r.status_code >= 500:
            time.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        r.raise_for_status()
        return r.json()["chart"]["result"][0]


def frame(result: dict, p1: int, p2: int) -> tuple[pd.DataFrame, int]:
    """The answer as a DataFrame of complete bars in [p1, p2), and how many nulls it had."""
    quote = result["indicators"]["quote"][0]
    df = pd.DataFrame(
        {k: quote.get(k, []) for k in ("open", "high", "low", "close", "volume")},
        index=pd.to_datetime(result.get("timestamp", []), unit="s", utc=True),
        dtype="float64",
    )
    n = len(df)
    df = df.dropna(subset=["open", "high", "low", "close"])
    nulls = n - len(df)
    df["volume"] = df["volume"].fillna(0).astype("int64")
    df = df[(df.index >= pd.Timestamp(p1, unit="s", tz="UTC")) & (df.index < pd.Timestamp(p2, unit="s", tz="UTC"))]
    return df, nulls


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--tickers-file", required=True)
    p.add_argument("--from", dest="first", required=True, type=date.fromisoformat)
    p.add_argument("--to", dest="last", required=True, type=date.fromisoformat)
    p.add_argument("--interval", choices=sorted(WINDOW), required=True)
    a = p.parse_args()
    with open(a.tickers_file) as f:
        tickers = [line.strip() for line in f if line.strip()]

    engine = create_engine(a.database_url)
    Base.metadata.create_all(engine)
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    started = time.perf_counter()
    n_requests = bars = nulls = 0
    with Session(engine) as session:
        for symbol in tickers:
            for start, stop in windows(a.first, a.last, a.interval):
                p1, p2 = int(start.timestamp()), int(stop.timestamp())
                result = fetch(s, a.base_url, symbol, a.interval, p1, p2)
                n_requests += 1
                df, n = frame(result, p1, p2)
                nulls += n
                bars += len(df)
                if df.empty:
                    continue
                ts = df.index.floor("D") if a.interval == "1d" else df.index
                records = (
                    df.assign(symbol=symbol, timeframe=a.interval, ts=ts)
                    .reset_index(drop=True)
                    .to_dict("records")
                )
                stmt = insert(MarketPrice).on_conflict_do_nothing(
                    index_elements=["symbol", "timeframe", "ts"]
                )
                session.execute(stmt, records)
                session.commit()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "requests": n_requests,
                "bars": bars,
                "nulls": nulls,
            }
        )
    )


if __name__ == "__main__":
    main()
