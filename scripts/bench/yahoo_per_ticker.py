"""The seeds' way of polling Yahoo, for docs/benchmarks.md: one quote request per ticker.

The Python first version fetched every ticker on its own (yfinance, one request per symbol,
30-40 s for 300 tickers). This script does the same against the local Yahoo-protocol server
that bench_yahoo starts (tests/testkit/src/yahoo.rs): the cookie + crumb flow once, then one
GET /v7/finance/quote?symbols=<ticker> per ticker, either one after another with `requests`
(what yfinance does) or with `aiohttp` and a few requests in flight. It times one poll cycle
and prints one JSON object on stdout. A measurement, not a test.

    python yahoo_per_ticker.py --base-url http://127.0.0.1:PORT --tickers-file F \
        --mode sequential|aiohttp [--concurrency 4]
"""

import argparse
import asyncio
import json
import time

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def a3_cookie(set_cookie: str) -> str:
    """The A3 session cookie from a Set-Cookie header (sent by hand: the server's cookie is
    Secure, which a cookie jar would not send over plain http)."""
    for part in set_cookie.split(";"):
        part = part.strip()
        if part.startswith("A3="):
            return part
    raise SystemExit(f"no A3 cookie in {set_cookie!r}")


def check(body: dict, ticker: str) -> dict:
    results = body["quoteResponse"]["result"]
    if len(results) != 1 or results[0]["symbol"] != ticker:
        raise SystemExit(f"unexpected answer for {ticker}: {body!r:.200}")
    quote = results[0]
    # What the seed kept of each answer.
    return {
        "ticker": ticker,
        "price": float(quote["regularMarketPrice"]),
        "volume": int(quote["regularMarketVolume"]),
        "time": int(quote["regularMarketTime"]),
    }


def sequential(base: str, tickers: list[str]) -> tuple[float, int]:
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    started = time.perf_counter()
    r = s.get(f"{base}/")
    cookie = a3_cookie(r.headers["set-cookie"])
    s.headers["Cookie"] = cookie
    crumb = s.get(f"{base}/v1/test/getcrumb").text
    quotes = []
    for t in tickers:
        r = s.get(
            f"{base}/v7/finance/quote",
            params={"symbols": t, "crumb": crumb, "formatted": "false"},
        )
        r.raise_for_status()
        quotes.append(check(r.json(), t))
    return time.perf_counter() - started, len(quotes)


async def concurrent(base: str, tickers: list[str], in_flight: int) -> tuple[float, int]:
    import aiohttp

    headers = {"User-Agent": USER_AGENT}
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.get(f"{base}/") as r:
            headers["Cookie"] = a3_cookie(r.headers["Set-Cookie"])
        async with s.get(f"{base}/v1/test/getcrumb", headers=headers) as r:
            crumb = await r.text()
        gate = asyncio.Semaphore(in_flight)

        async def one(t: str) -> dict:
            async with gate:
                params = {"symbols": t, "crumb": crumb, "formatted": "false"}
                async with s.get(
                    f"{base}/v7/finance/quote", params=params, headers=headers
                ) as r:
                    r.raise_for_status()
                    return check(await r.json(content_type=None), t)

        quotes = await asyncio.gather(*(one(t) for t in tickers))
    return time.perf_counter() - started, len(quotes)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--tickers-file", required=True)
    p.add_argument("--mode", choices=["sequential", "aiohttp"], required=True)
    p.add_argument("--concurrency", type=int, default=4)
    a = p.parse_args()
    with open(a.tickers_file) as f:
        tickers = [line.strip() for line in f if line.strip()]
    if a.mode == "sequential":
        seconds, quotes = sequential(a.base_url, tickers)
    else:
        seconds, quotes = asyncio.run(concurrent(a.base_url, tickers, a.concurrency))
    print(json.dumps({"seconds": seconds, "quotes": quotes, "requests": len(tickers)}))


if __name__ == "__main__":
    main()
