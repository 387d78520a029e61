"""The seeds' way of answering POST /quotes/batch, for the store benchmark (docs/benchmarks.md):
FastAPI + pydantic models checking INV-001..006, SQLAlchemy bulk insert into quotes.real_time
(ON CONFLICT DO NOTHING, so a replay inserts nothing), served by uvicorn. No rollups: the
peer does less work than quotestream-store.

    python store_peer.py --port 8000 --database-url postgresql://postgres@127.0.0.1:5432/peer
"""

import argparse
import re
from datetime import datetime, timezone
from typing import List, Literal, Optional

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import (BigInteger, Column, DateTime, Float, MetaData, Table, Text,
                        create_engine, text)
from sqlalchemy.dialects.postgresql import insert

TICKER = re.compile(r"^[A-Z]{1,5}$")


class Quote(BaseModel):
    ticker: str
    timestamp: datetime
    close: float = Field(gt=0)
    open: Optional[float] = None
    high: Optional[float] = None
    low: Optional[float] = None
    volume: int = Field(ge=0)
    source: Literal["yfinance", "fmp", "manual", "alpaca", "polygon", "synthetic", "replay"]

    @field_validator("ticker")
    @classmethod
    def inv_002(cls, v: str) -> str:
        if not TICKER.match(v):
            raise ValueError(f"Invalid ticker format: {v}")
        return v

    @field_validator("timestamp")
    @classmethod
    def inv_003(cls, v: datetime) -> datetime:
        if v.utcoffset() is None or v.utcoffset().total_seconds() != 0:
            raise ValueError(f"Timestamp must be UTC: {v}")
        return v


class Batch(BaseModel):
    quotes: List[Quote] = Field(min_length=1, max_length=1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    url = args.database_url.replace("postgres://", "postgresql+psycopg://", 1)
    engine = create_engine(url, pool_size=4)
    meta = MetaData(schema="quotes")
    table = Table(
        "real_time", meta,
        Column("symbol", Text, primary_key=True),
        Column("timestamp", DateTime(timezone=True), primary_key=True),
        Column("price", Float, nullable=False),
        Column("volume", BigInteger, nullable=False),
        Column("open", Float), Column("high", Float), Column("low", Float),
        Column("source", Text, nullable=False),
    )
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS quotes"))
    meta.create_all(engine)
    app = FastAPI()

    @app.post("/quotes/batch")
    def post_batch(batch: Batch):
        rows = [
            {"symbol": q.ticker, "timestamp": q.timestamp.astimezone(timezone.utc),
             "price": q.close, "volume": q.volume, "open": q.open, "high": q.high,
             "low": q.low, "source": q.source}
            for q in batch.quotes
        ]
        with engine.begin() as conn:
            result = conn.execute(insert(table).on_conflict_do_nothing(), rows)
        return {"accepted": len(rows), "inserted": result.rowcount}

    @app.get("/ready")
    def ready():
        return "ready"

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
