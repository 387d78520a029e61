"""The seeds' way of answering POST /quotes/batch, for the store benchmark (docs/benchmarks.md).

Seed 002 (opa-quotes-storage) stores quotes through `QuoteRepository.bulk_insert`; its code
(src/opa_quotes_storage/repository.py at its last change, OPA-316, and connection.py,
models/quote.py) is followed here step for step, so the peer is neither handicapped nor
faster than the seed:

- the engine of connection.py: `create_engine(postgresql://…)` — SQLAlchemy's psycopg2
  dialect, the seed's driver (psycopg2-binary; named in the URL here, since SQLAlchemy 2.1
  would pick psycopg 3 for a bare `postgresql://`) — with pool_size=10, max_overflow=20,
  pool_pre_ping=True; a Session from `sessionmaker(autocommit=False, autoflush=False)` per
  request;
- the model of models/quote.py (`RealTimeQuote`, NUMERIC(10, 2) prices, BigInteger volume,
  Text source), mapped onto the same table the store and the worker's direct writer write
  (`quotes.real_time`, made by the store's migrations; the seed's `close` is this table's
  `price`);
- `bulk_insert`: every quote validated by the seed's pydantic `QuoteSchema` (Decimal prices,
  upper-cased symbol, UTC timestamp) and `model_dump()`ed, then
  `session.execute(insert(RealTimeQuote), rows)` per 1000 rows (SQLAlchemy's ORM bulk
  INSERT: multi-row INSERT statements, "insertmanyvalues") and `session.commit()`. The seed's
  insert has no ON CONFLICT: a replayed batch fails on the primary key (the benchmark sends
  the peer new quotes only, so this costs it nothing there).

In front of it, FastAPI with a pydantic request model of contract 001 (the shape of the seeds'
`QuoteBatchCreate` in opa-quotes-api, with the contract's INV-001..006 checks: the store checks
the same), served by uvicorn with `--workers` processes: the benchmark gives it as many as the
store has threads, as the query benchmark does (the seeds' own `uvicorn.run` starts one; one
process would leave the peer a single core of the two). No rollups: the peer does less work
than quotestream-store.

    STORE_PEER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/peer python store_peer.py --port 8000 --workers 2
"""

import argparse
import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, List, Literal, Optional

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import NUMERIC, TIMESTAMP, BigInteger, Column, Text, create_engine, insert
from sqlalchemy.orm import Session, declarative_base, sessionmaker

TICKER = re.compile(r"^[A-Z]{1,5}$")

# --- The seed's model (models/quote.py), on the store's table -------------------------------

Base = declarative_base()


class RealTimeQuote(Base):
    __tablename__ = "real_time"
    __table_args__ = {"schema": "quotes"}

    symbol = Column(Text, primary_key=True, nullable=False)
    timestamp = Column(TIMESTAMP(timezone=True), primary_key=True, nullable=False)
    open = Column(NUMERIC(10, 2))
    high = Column(NUMERIC(10, 2))
    low = Column(NUMERIC(10, 2))
    # The seed's `close` column is this table's `price` (the last trade).
    close = Column("price", NUMERIC(10, 2))
    volume = Column(BigInteger)
    bid = Column(NUMERIC(10, 2))
    ask = Column(NUMERIC(10, 2))
    source = Column(Text)


# --- The seed's repository (repository.py) --------------------------------------------------


class QuoteSchema(BaseModel):
    """Pydantic schema for quote validation (the seed's, unchanged)."""

    model_config = ConfigDict(
        str_strip_whitespace=True, validate_assignment=True, from_attributes=True
    )

    symbol: str = Field(..., min_length=1, max_length=10)
    timestamp: datetime = Field(...)
    open: Optional[Decimal] = Field(None, ge=0)
    high: Optional[Decimal] = Field(None, ge=0)
    low: Optional[Decimal] = Field(None, ge=0)
    close: Optional[Decimal] = Field(None, ge=0)
    volume: Optional[int] = Field(None, ge=0)
    bid: Optional[Decimal] = Field(None, ge=0)
    ask: Optional[Decimal] = Field(None, ge=0)
    source: Optional[str] = Field(None, max_length=50)

    @field_validator("symbol")
    @classmethod
    def uppercase_symbol(cls, v: str) -> str:
        return v.upper().strip()

    @field_validator("timestamp")
    @classmethod
    def ensure_utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v


class QuoteRepository:
    def __init__(self, session: Session):
        self.session = session

    def bulk_insert(self, quotes: list[dict[str, Any]], batch_size: int | None = 1000) -> int:
        if not quotes:
            return 0
        validated = [QuoteSchema(**q).model_dump() for q in quotes]
        if not validated:
            return 0
        stmt = insert(RealTimeQuote)
        if batch_size is None or batch_size <= 0:
            batch_size = len(validated)
        for i in range(0, len(validated), batch_size):
            self.session.execute(stmt, validated[i : i + batch_size])
        self.session.commit()
        return len(validated)


# --- The HTTP side: contract 001 ------------------------------------------------------------


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


# connection.py: the seed's engine and session factory, one per worker process.
# The seed's `postgresql://` URL meant psycopg2 under SQLAlchemy 2.0, the only driver it installs;
# SQLAlchemy 2.1 maps that URL to psycopg 3 instead, so the driver is named.
URL = os.environ.get("STORE_PEER_DATABASE_URL", "").replace("postgres://", "postgresql+psycopg2://", 1)
engine = create_engine(URL, pool_size=10, max_overflow=20, pool_pre_ping=True, echo=False) if URL else None
sessions = sessionmaker(bind=engine, autocommit=False, autoflush=False)
app = FastAPI()


@app.post("/quotes/batch")
def post_batch(batch: Batch):
    quotes = [
        {"symbol": q.ticker, "timestamp": q.timestamp, "open": q.open, "high": q.high,
         "low": q.low, "close": q.close, "volume": q.volume, "source": q.source}
        for q in batch.quotes
    ]
    with sessions() as session:
        inserted = QuoteRepository(session).bulk_insert(quotes)
    return {"accepted": len(quotes), "inserted": inserted}


@app.get("/ready")
def ready():
    return "ready"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("store_peer:app", host="127.0.0.1", port=args.port, workers=args.workers, log_level="warning")


if __name__ == "__main__":
    main()
