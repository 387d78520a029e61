#!/usr/bin/env python3
"""Adapts examples/sp500.yaml for the real-node end-to-end test: the same 503 tickers and sinks,
with the built-in synthetic source instead of Yahoo (the node has no internet) and the sinks
pointed at the test's Redis and PostgreSQL pods (no cluster DNS there).

  sp500-manifest.py examples/sp500.yaml --redis redis://10.244.0.5:6379/0 --interval 1s --shards 3
  sp500-manifest.py examples/sp500.yaml --count      # how many tickers the example lists
"""
import argparse
import re
import sys


def tickers(example):
    text = open(example).read()
    m = re.search(r"^  tickers: \[(.*?)\]", text, re.S | re.M)
    if not m:
        sys.exit(f"sp500-manifest: no `tickers: [...]` list in {example}")
    return [t.strip().strip('"') for t in m.group(1).replace("\n", " ").split(",") if t.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("example")
    p.add_argument("--count", action="store_true", help="print the number of tickers and exit")
    p.add_argument("--redis", help="Redis URL of the redis sink")
    p.add_argument("--interval", default="1s")
    p.add_argument("--shards", type=int, default=4)
    a = p.parse_args()
    t = tickers(a.example)
    if a.count:
        print(len(t))
        return
    if not a.redis:
        p.error("--redis is required")
    quoted = ", ".join(f'"{x}"' for x in t)
    print(f"""apiVersion: quotes.opa.io/v1alpha1
kind: QuoteStream
metadata:
  name: sp500
  namespace: markets
spec:
  interval: {a.interval}
  shards: {a.shards}
  source:
    type: synthetic
  sinks:
    redis:
      url: {a.redis}
      channel: quotes.realtime
      format: plain
      # The S&P list holds BRK.B and BF.B: the node test expects every ticker on Redis, so it
      # opts in to the extended ticker pattern (contract 004 as written keeps them off).
      allowShareClasses: true
    postgres:
      dsnSecretRef:
        name: quotes-db
        key: dsn
      table: quotes.real_time
  worker:
    resources:
      requests: {{cpu: 20m, memory: 16Mi}}
      limits: {{memory: 128Mi}}
  tickers: [{quoted}]""")


if __name__ == "__main__":
    main()
