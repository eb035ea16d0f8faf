#!/usr/bin/python3
"""Scrapes a Prometheus endpoint and parses it with the real parser (prometheus_client, Debian's
python3-prometheus-client), as Prometheus would: prints one JSON object
  {"status": 200, "content_type": "...", "families": {name: {"type": t, "help": h,
   "samples": [{"name": n, "labels": {...}, "value": v}, ...]}}}
or, with --method/--path for the error cases, just {"status": N}. Exit 1 (with the reason on
stderr) when the endpoint does not answer or the text does not parse. Counter families are named
as the parser names them: without the _total of their samples.

usage: metrics_scrape.py http://HOST:PORT [--path /metrics] [--method GET]
"""
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    base, path, method = args[0], "/metrics", "GET"
    i = 1
    while i < len(args):
        if args[i] == "--path":
            path = args[i + 1]
        elif args[i] == "--method":
            method = args[i + 1]
        else:
            print(f"unknown argument {args[i]}", file=sys.stderr)
            return 2
        i += 2
    req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, ctype, body = resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code}))
        return 0
    except (urllib.error.URLError, OSError) as e:
        print(f"scrape {base}{path}: {e}", file=sys.stderr)
        return 1
    if path != "/metrics" or method != "GET":
        print(json.dumps({"status": status}))
        return 0
    families = {}
    try:
        for fam in text_string_to_metric_families(body):
            families[fam.name] = {
                "type": fam.type,
                "help": fam.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in fam.samples],
            }
    except Exception as e:  # the parser raises ValueError and friends on malformed text
        print(f"the exposition does not parse: {e}\n--- text:\n{body[:4000]}", file=sys.stderr)
        return 1
    print(json.dumps({"status": status, "content_type": ctype, "families": families}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
