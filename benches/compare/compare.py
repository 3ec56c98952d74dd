#!/usr/bin/env python3
"""Side-by-side latency of albert-edge, ONNX Runtime and tract on one ALBERT model.

Run through `benches/compare/run.sh`, which builds the binaries, converts the model
and installs onnxruntime into a private venv. Every engine runs in its own process
(so each reports its own peak RSS) on the same batch-1 inputs, in interleaved rounds
(engine A, B, C, ... then again, each round starting one engine later: B, C, ..., A), so
machine noise, and any cost of running first in a round, hits all engines alike. The table
shows, per sequence length and thread count, the median over rounds of each engine's
median latency, its ratio to ONNX Runtime int8, and peak RSS.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def ort_worker(path, seq, threads, runs, warmup, vocab):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ids = np.array([[2] + [(5 + i * 131) % vocab for i in range(1, seq)]], dtype=np.int64)
    feed = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feed[i.name] = ids
        elif i.name == "attention_mask":
            feed[i.name] = np.ones((1, seq), dtype=np.int64)
        else:
            feed[i.name] = np.zeros((1, seq), dtype=np.int64)
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "median_ms": statistics.median(times),
        "p90_ms": times[max(0, -(-len(times) * 9 // 10) - 1)],
        "peak_rss_bytes": rss,
        "ort_version": ort.__version__,
    }))


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        lines = [l.strip() for l in p.stderr.splitlines() if l.strip()]
        err = next((l for l in lines if l.startswith("Error") or "error" in l.lower()), lines[-1] if lines else "failed")
        return None, err
    line = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not line:
        return None, "no JSON output"
    return json.loads(line[-1]), None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker", nargs=6, metavar=("ENGINE", "MODEL", "SEQ", "THREADS", "RUNS", "VOCAB"))
    ap.add_argument("--albert-edge", help="albert-edge binary")
    ap.add_argument("--tract-bench", help="tract_bench example binary")
    ap.add_argument("--int8", help="albert-edge int8 model file")
    ap.add_argument("--f32", help="albert-edge f32 model file")
    ap.add_argument("--onnx", help="fp32 ONNX export")
    ap.add_argument("--onnx-int8", help="ONNX Runtime quantize_dynamic int8 ONNX")
    ap.add_argument("--seq", default="8,32,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--no-tract", action="store_true")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()

    if a.worker:
        engine, path, seq, threads, runs, vocab = a.worker
        assert engine == "ort"
        ort_worker(path, int(seq), int(threads), int(runs), 3, int(vocab))
        return

    engines = []  # (name, threads -> command or None)
    if a.int8:
        engines.append(("albert-edge int8", lambda s, t: [a.albert_edge, "bench", a.int8, "--seq", str(s), "--threads", str(t), "--runs", str(a.runs), "--json"]))
    if a.onnx_int8:
        engines.append(("onnxruntime int8", lambda s, t: [sys.executable, __file__, "--worker", "ort", a.onnx_int8, str(s), str(t), str(a.runs), str(a.vocab)]))
    if a.f32:
        engines.append(("albert-edge f32", lambda s, t: [a.albert_edge, "bench", a.f32, "--seq", str(s), "--threads", str(t), "--runs", str(a.runs), "--json"]))
    if a.onnx:
        engines.append(("onnxruntime fp32", lambda s, t: [sys.executable, __file__, "--worker", "ort", a.onnx, str(s), str(t), str(a.runs), str(a.vocab)]))
    if a.tract_bench and not a.no_tract:
        # tract runs on one thread.
        if a.onnx:
            engines.append(("tract fp32", lambda s, t: None if t != 1 else [a.tract_bench, a.onnx, "--seq", str(s), "--runs", str(max(5, a.runs // 2)), "--vocab", str(a.vocab)]))
        if a.onnx_int8:
            engines.append(("tract int8", lambda s, t: None if t != 1 else [a.tract_bench, a.onnx_int8, "--seq", str(s), "--runs", str(max(5, a.runs // 2)), "--vocab", str(a.vocab)]))

    seqs = [int(x) for x in a.seq.split(",")]
    threads = [int(x) for x in a.threads.split(",")]
    results = {}  # (engine, seq, threads) -> list of round medians, rss, error
    for r in range(a.rounds):
        for s in seqs:
            for t in threads:
                # Rotated each round: a slot that is slower on this machine (the first
                # process after another engine's, measured up to 1.5x) is shared by all.
                k = r % len(engines)
                for name, cmd in engines[k:] + engines[:k]:
                    c = cmd(s, t)
                    if c is None:
                        continue
                    out, err = run_json(c)
                    e = results.setdefault((name, s, t), {"medians": [], "p90": [], "rss": 0, "error": None})
                    if out is None:
                        e["error"] = err
                        continue
                    e["medians"].append(out["median_ms"])
                    e["p90"].append(out["p90_ms"])
                    e["rss"] = max(e["rss"], out.get("peak_rss_bytes", 0))
                    print(f"round {r + 1}/{a.rounds} seq {s:>4} threads {t} {name:<18} {out['median_ms']:9.2f} ms", file=sys.stderr, flush=True)

    print(f"\nbatch 1, median of {a.rounds} rounds x {a.runs} runs each; ratio = engine / onnxruntime int8 (same seq, threads)\n")
    print(f"| seq | threads | engine | median ms | p90 ms | ratio vs ORT int8 | peak RSS MB |")
    print(f"|---:|---:|---|---:|---:|---:|---:|")
    table = []
    for s in seqs:
        for t in threads:
            base = results.get(("onnxruntime int8", s, t))
            base_ms = statistics.median(base["medians"]) if base and base["medians"] else None
            for name, _ in engines:
                e = results.get((name, s, t))
                if e is None:
                    continue
                if not e["medians"]:
                    print(f"| {s} | {t} | {name} | n/a ({e['error']}) | | | |")
                    continue
                med = statistics.median(e["medians"])
                p90 = statistics.median(e["p90"])
                ratio = f"{med / base_ms:.2f}x" if base_ms else ""
                print(f"| {s} | {t} | {name} | {med:.2f} | {p90:.2f} | {ratio} | {e['rss'] / 2**20:.1f} |")
                table.append({"engine": name, "seq": s, "threads": t, "median_ms": med, "p90_ms": p90, "peak_rss_bytes": e["rss"], "round_medians": e["medians"]})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
