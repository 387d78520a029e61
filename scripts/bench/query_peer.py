"""The seeds' way of serving stored quotes, for the query benchmark (docs/benchmarks.md):
FastAPI + SQLAlchemy (psycopg) answering GET /v1/quotes/{symbol}?start&end&limit with the same
SQL and JSON shape as quotestream-store, served by uvicorn with as many worker processes as
the store has threads.

    QUERY_PEER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/db python query_peer.py --port 8001 --workers 2
"""

import argparse
import os
from datetime import datetime, timezone
from typing import Optional

import uvicorn
from fastapi import FastAPI, HTTPException
from sqlalchemy import create_engine, text

URL = os.environ.get("QUERY_PEER_DATABASE_URL", "").replace("postgres://", "postgresql+psycopg://", 1)
engine = create_engine(URL, pool_size=4) if URL else None
app = FastAPI()
QUOTES = text(
    'SELECT "timestamp", price, volume, source FROM quotes.real_time '
    'WHERE symbol = :symbol AND "timestamp" >= :start AND "timestamp" <= :end '
    'ORDER BY "timestamp" LIMIT :limit'
)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@app.get("/v1/quotes/{symbol}")
def quotes(symbol: str, start: datetime, end: datetime, limit: int = 1000, page_token: Optional[str] = None):
    if not 1 <= limit <= 10000:
        raise HTTPException(status_code=400, detail="limit must be 1..10000")
    with engine.connect() as conn:
        rows = conn.execute(QUOTES, {"symbol": symbol, "start": start, "end": end, "limit": limit + 1}).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "symbol": symbol,
        "quotes": [{"t": iso(r[0]), "p": r[1], "v": r[2], "src": r[3]} for r in rows],
        "next_page_token": iso(rows[-1][0]) if more else None,
    }


@app.get("/ready")
def ready():
    return "ready"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("query_peer:app", host="127.0.0.1", port=args.port, workers=args.workers, log_level="warning")


if __name__ == "__main__":
    main()
