#!/usr/bin/env python3
"""Turn the raw timings of bench/run.sh or bench/walk.sh into JSON, a markdown table and a chart.

Raw timings: one tab-separated line per timed command
  case op tool run t0 t1 maxrss_kb bytes rc errfile [cpu_s]
(cpu_s: user + system seconds; absent in timings from before it was recorded)
run 0 is the warm-up run: it is kept in the JSON but left out of the statistics.
"""

import argparse
import json
import os
import statistics

MiB = 1 << 20
RSS_LIMIT = 64 * MiB
CASES = ["full", "incremental", "quiet"]
CASE_TITLE = {"full": "full (s1)", "incremental": "incremental (s1→s2)",
              "quiet": "quiet day (s2→s3)", "unchanged": "unchanged tree",
              "changed-1%": "1% of files changed"}

# (anysend row, peer row, what is compared): ratios are anysend / peer.
# A row is (op, tool); "e2e" adds anysend send + anyrecv receive.
COMPARE = [
    (("send", "anysend"), ("send", "btrfs send")),
    (("send", "anysend"), ("send", "tar")),
    (("send", "anysend -z"), ("send", "btrfs send | zstd -3")),
    (("send", "anysend -z"), ("send", "tar | zstd -3")),
    (("send", "anysend"), ("send", "rsync --only-write-batch")),
    (("send", "anysend"), ("scan", "rsync -a -n --delete")),
    (("scan", "anysend -n"), ("scan", "rsync -a -n --delete")),
    (("check", "anyrecv --check"), ("check", "rsync -a -n --delete")),
    (("receive", "anyrecv"), ("receive", "btrfs receive")),
    (("receive", "anyrecv"), ("receive", "tar -x")),
    (("receive", "anyrecv (-z stream)"), ("receive", "zstd -d | tar -x")),
    # what the receive journal costs, in every case
    (("receive", "anyrecv"), ("receive", "anyrecv (no journal)")),
    # this build against another (`--anyrecv-vs`), in every case
    (("receive", "anyrecv"), ("receive", "anyrecv (other build)")),
    (("e2e", "anysend + anyrecv"), ("sync", "rsync -aHAX --delete")),
]

# (id, case, anysend row, peer row, metric, limit, text)
TARGETS = [
    ("full-send-vs-btrfs", "full", ("send", "anysend"), ("send", "btrfs send"), "wall", 0.8,
     "full send ≤ 0.8× `btrfs send` wall time"),
    ("full-send-vs-tar", "full", ("send", "anysend"), ("send", "tar"), "wall", 1.0,
     "full send ≤ `tar` wall time"),
    ("full-z-bytes-vs-tar-zstd", "full", ("send", "anysend -z"), ("send", "tar | zstd -3"), "bytes",
     1.0, "full stream with `-z` no larger than `tar | zstd -3`"),
    ("inc-send-vs-btrfs", "incremental", ("send", "anysend"), ("send", "btrfs send"), "wall", 1.5,
     "incremental send ≤ 1.5× `btrfs send` wall time"),
    ("inc-bytes-vs-btrfs", "incremental", ("send", "anysend"), ("send", "btrfs send"), "bytes", 1.0,
     "incremental stream bytes ≤ `btrfs send`'s"),
    ("quiet-send-vs-rsync-n", "quiet", ("send", "anysend"), ("scan", "rsync -a -n --delete"), "wall",
     0.3, "quiet-day send ≤ 0.3× `rsync -a -n --delete` wall time"),
    ("full-check-vs-rsync-n", "full", ("check", "anyrecv --check"), ("check", "rsync -a -n --delete"),
     "wall", 1.0, "`anyrecv --check` of the received full tree ≤ 1.0× `rsync -a -n --delete` of it"),
    ("full-recv-vs-btrfs", "full", ("receive", "anyrecv"), ("receive", "btrfs receive"), "wall", 1.0,
     "full receive ≤ 1.0× `btrfs receive` wall time"),
    ("full-recv-vs-tar", "full", ("receive", "anyrecv"), ("receive", "tar -x"), "wall", 1.0,
     "full receive ≤ `tar -x` wall time"),
    ("inc-recv-vs-btrfs", "incremental", ("receive", "anyrecv"), ("receive", "btrfs receive"), "wall",
     1.0, "incremental receive ≤ 1.0× `btrfs receive` (informative)"),
    ("quiet-recv-vs-btrfs", "quiet", ("receive", "anyrecv"), ("receive", "btrfs receive"), "wall",
     1.0, "quiet-day receive ≤ 1.0× `btrfs receive` (informative)"),
    ("inc-journal-cost", "incremental", ("receive", "anyrecv"), ("receive", "anyrecv (no journal)"),
     "wall", 1.1, "journaling adds ≤ 10% to the incremental receive (anyrecv / anyrecv with "
     "ANYRECV_NO_JOURNAL=1)"),
    ("inc-vs-other-build", "incremental", ("receive", "anyrecv"),
     ("receive", "anyrecv (other build)"), "wall", 1.05,
     "incremental receive ≤ 1.05× the other build's (`--anyrecv-vs`)"),
    ("full-vs-other-build", "full", ("receive", "anyrecv"), ("receive", "anyrecv (other build)"),
     "wall", 1.05, "full receive ≤ 1.05× the other build's (`--anyrecv-vs`; informative)"),
    ("full-journal-cost", "full", ("receive", "anyrecv"), ("receive", "anyrecv (no journal)"),
     "wall", 1.1, "journaling adds ≤ 10% to the full receive (informative)"),
]


def fmt_s(x):
    if x is None:
        return "—"
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def fmt_b(x):
    if x is None:
        return "—"
    for unit, div in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if x >= div:
            return f"{x / div:.2f} {unit} ({x:,} B)" if unit != "KiB" else f"{x / div:.1f} KiB ({x:,} B)"
    return f"{x} B"


def fmt_rss(kb):
    return "—" if kb is None else f"{kb / 1024:.1f} MiB"


def md(x):
    """A table cell: escape the pipe of shell pipelines."""
    return str(x).replace("|", "\\|")


def fmt_r(x):
    return "—" if x is None else f"{x:.2f}×"


def load_rows(path):
    rows = {}
    order = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 10:
                continue
            case, op, tool, run, t0, t1, rss, nbytes, rc, errf = p[:10]
            key = (case, op, tool)
            if key not in rows:
                rows[key] = []
                order.append(key)
            rows[key].append({
                "run": int(run), "wall_s": round(float(t1) - float(t0), 4),
                "maxrss_kb": int(rss or 0), "bytes": int(nbytes) if nbytes else None,
                "rc": int(rc), "errfile": errf,
                "cpu_s": float(p[10]) if len(p) > 10 and p[10] else None,
            })
    return rows, order


def summarize(key, runs):
    case, op, tool = key
    ok = [r for r in runs if r["rc"] == 0]
    timed = [r for r in ok if r["run"] > 0]
    failed = [r for r in runs if r["rc"] != 0]
    s = {"case": case, "op": op, "tool": tool, "runs": runs, "n": len(timed)}
    if timed:
        walls = [r["wall_s"] for r in timed]
        s.update(wall_median_s=statistics.median(walls), wall_min_s=min(walls),
                 wall_max_s=max(walls))
    else:
        s.update(wall_median_s=None, wall_min_s=None, wall_max_s=None)
    s["maxrss_kb"] = max((r["maxrss_kb"] for r in ok), default=None)
    b = [r["bytes"] for r in ok if r["bytes"] is not None]
    s["bytes"] = b[-1] if b else None
    if failed:
        r = failed[0]
        tail = ""
        try:
            with open(r["errfile"], errors="replace") as f:
                tail = "".join(f.readlines()[-12:])
        except OSError:
            pass
        s["error"] = {"run": r["run"], "rc": r["rc"], "stderr_tail": tail}
    for r in runs:
        r.pop("errfile", None)
    return s


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def paired(a, p):
    """Per-run wall ratios of two rows measured in turns (run r of one right before or after run
    r of the other): their median, min and max, or None when the rows were not taken in turns."""
    if not a or not p or "runs" not in a or "runs" not in p:
        return None
    pw = {r["run"]: r["wall_s"] for r in p["runs"] if r["rc"] == 0 and r["run"] > 0}
    rs = sorted(r["wall_s"] / pw[r["run"]] for r in a["runs"]
                if r["rc"] == 0 and r["run"] > 0 and pw.get(r["run"]))
    if len(rs) < 3:
        return None
    out = {"n": len(rs), "median": statistics.median(rs), "min": rs[0], "max": rs[-1]}
    # CPU time (user + system) of the same runs: the ratio of the medians.
    cpu = [[r["cpu_s"] for r in x["runs"] if r["rc"] == 0 and r["run"] > 0
            and r.get("cpu_s") is not None] for x in (a, p)]
    if all(len(c) >= 3 for c in cpu):
        out["cpu"] = ratio(statistics.median(cpu[0]), statistics.median(cpu[1]))
    return out


def build_run(meta, timings, verify_path):
    rows, order = load_rows(timings)
    summ = {k: summarize(k, rows[k]) for k in order}

    def get(case, row):
        op, tool = row
        if op == "e2e":
            a, b = summ.get((case, "send", "anysend")), summ.get((case, "receive", "anyrecv"))
            if not a or not b or a["wall_median_s"] is None or b["wall_median_s"] is None:
                return None
            return {"wall_median_s": a["wall_median_s"] + b["wall_median_s"], "bytes": a["bytes"],
                    "maxrss_kb": max(a["maxrss_kb"] or 0, b["maxrss_kb"] or 0)}
        return summ.get((case, op, tool))

    comparisons = []
    for case in CASES:
        for arow, prow in COMPARE:
            a, p = get(case, arow), get(case, prow)
            if p is None:
                continue
            comparisons.append({
                "case": case, "anysend": f"{arow[1]} ({arow[0]})", "peer": f"{prow[1]} ({prow[0]})",
                "wall_ratio": ratio(a and a["wall_median_s"], p["wall_median_s"]),
                "bytes_ratio": ratio(a and a["bytes"], p["bytes"]) if arow[0] not in ("receive", "scan", "check") and prow[0] not in ("scan", "check") else None,
                "peer_key": list(prow), "anysend_key": list(arow),
            })
    targets = []
    for tid, case, arow, prow, metric, limit, text in TARGETS:
        a, p = get(case, arow), get(case, prow)
        key = "wall_median_s" if metric == "wall" else "bytes"
        r = ratio(a and a[key], p and p[key])
        t = {"id": tid, "case": case, "target": text, "metric": metric, "limit": limit,
             "ratio": r, "status": "n/a" if r is None else ("met" if r <= limit else "missed")}
        # Only these two rows are measured in turns (recv_cycles).
        pr = paired(a, p) if tid.endswith("journal-cost") else None
        if pr:
            t["paired"] = pr
        targets.append(t)
    for s in summ.values():
        if s["tool"].startswith(("anysend", "anyrecv")):
            kb = s["maxrss_kb"]
            targets.append({
                "id": f"rss:{s['case']}:{s['op']}:{s['tool']}", "case": s["case"],
                "target": f"peak RSS ≤ 64 MiB: {s['tool']} {s['op']}, {CASE_TITLE[s['case']]}", "metric": "rss",
                "limit": 64.0, "ratio": None if kb is None else kb / 1024,
                "status": "n/a" if kb is None or "error" in s else ("met" if kb * 1024 <= RSS_LIMIT else "missed")})
    verify = []
    if verify_path and os.path.exists(verify_path):
        with open(verify_path) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) >= 3:
                    verify.append({"case": p[0], "tool": p[1], "result": p[2],
                                   "detail": p[3] if len(p) > 3 else ""})
    return {"kind": "run", **meta, "warm_cache": True,
            "method": "warm cache (no cache dropped before a timed command; each receive "
                      "cycle starts from an emptied page cache with its streams read back in), "
                      "one warm-up run then the median of "
                      f"{meta['runs']} timed runs per row ({meta.get('journal_runs', meta['runs'])} "
                      "for anyrecv with and without its journal, taken in turns); wall time from the shell's clock around "
                      "`/usr/bin/time -v`, peak RSS = its 'Maximum resident set size' (for a "
                      "pipeline: the largest process of it)",
            "rows": list(summ.values()), "comparisons": comparisons, "targets": targets,
            "verification": verify}


def primary_ratio(data, s):
    """The wall ratio shown in the main table for a peer row."""
    for c in data["comparisons"]:
        if c["case"] == s["case"] and c["peer_key"] == [s["op"], s["tool"]]:
            return c
    return None


def machine_line(m):
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('ram', '?')} RAM, "
            f"Linux {m.get('kernel', '?')}")


def write_run_md(data, path):
    m = data["machine"]
    ds = data["dataset"]
    L = []
    L.append(f"# anysend benchmark: {data['mode']} run, {data['date']}\n")
    L.append(f"- machine: {machine_line(m)}")
    L.append(f"- tools: {m.get('btrfs_progs')}; {m.get('rsync')}; {m.get('tar')}; {m.get('zstd')}; "
             f"{m.get('anysend') or 'anysend (version unknown)'} (commit {data.get('commit')})")
    dio = {"on": "direct I/O", "off": "cached by the host too"}.get(m.get("loop_direct_io"), "?")
    L.append(f"- loop files on the host's {m.get('host_fs_of_loop_files') or '?'} ({dio}); source: btrfs; "
             "anyrecv, `tar -x` and full `rsync` write to ext4; `btrfs receive` to a second btrfs")
    L.append(f"- method: {data['method']}.")
    s1, s2, s3 = ds["s1"], ds["s2"], ds["s3"]
    L.append(f"- data set s1: {s1['entries']:,} entries ({s1['files']:,} files, {s1['dirs']:,} dirs, "
             f"{s1['symlinks']:,} symlinks), {fmt_b(s1['bytes'])} apparent, "
             f"{fmt_b(s1['allocated_bytes'])} allocated; s2: {s2['entries']:,} entries; "
             f"s3: {s3['entries']:,} entries")
    L.append(f"- a day of changes (s1→s2): `{json.dumps(ds['day_of_changes'])}`")
    L.append(f"- a quiet day (s2→s3): `{json.dumps(ds['quiet_day'])}`")
    L.append(f"- total benchmark time: {data['elapsed_s']} s; load average (1/5/15 min) at start / "
             f"end: {data.get('loadavg_start_end', '?')} (other work on the machine makes timings noisier)\n")

    L.append("## Results\n")
    L.append("Ratios are anysend / peer (below 1.0: anysend is faster or smaller); the anysend row "
             "each peer is compared with is named in the Comparisons table.\n")
    L.append("| case | op | tool | wall median | min / max | stream bytes | peak RSS | wall ratio | bytes ratio |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for case in CASES:
        for s in data["rows"]:
            if s["case"] != case:
                continue
            c = primary_ratio(data, s)
            err = " **FAILED**" if "error" in s else ""
            mm = ("—" if s["wall_min_s"] is None
                  else f"{fmt_s(s['wall_min_s'])} / {fmt_s(s['wall_max_s'])}")
            L.append(f"| {CASE_TITLE[case]} | {s['op']} | {md(s['tool'])}{err} | {fmt_s(s['wall_median_s'])} "
                     f"| {mm} | {fmt_b(s['bytes'])} | {fmt_rss(s['maxrss_kb'])} "
                     f"| {fmt_r(c and c['wall_ratio'])} | {fmt_r(c and c['bytes_ratio'])} |")
    L.append("\nFor receive rows, \"stream bytes\" is the size of the stream or archive read. "
             "`sync` rows (rsync -aHAX) are compared with anysend send + anyrecv receive.\n")

    L.append("## Comparisons\n")
    L.append("| case | anysend | peer | wall ratio | bytes ratio |")
    L.append("|---|---|---|---:|---:|")
    for c in data["comparisons"]:
        L.append(f"| {CASE_TITLE[c['case']]} | {md(c['anysend'])} | {md(c['peer'])} | {fmt_r(c['wall_ratio'])} "
                 f"| {fmt_r(c['bytes_ratio'])} |")

    L.append("\n## Targets (measured, never asserted)\n")
    L.append("| target | measured | limit | status |")
    L.append("|---|---:|---:|---|")
    for t in data["targets"]:
        if t["metric"] == "rss":
            meas = "—" if t["ratio"] is None else f"{t['ratio']:.1f} MiB"
            lim = "64 MiB"
        else:
            meas, lim = fmt_r(t["ratio"]), f"{t['limit']}×"
            pr = t.get("paired")
            if pr:
                meas += (f" (run by run: median {fmt_r(pr['median'])}, {fmt_r(pr['min'])}–"
                         f"{fmt_r(pr['max'])}, {pr['n']} pairs"
                         + (f"; CPU time {fmt_r(pr['cpu'])}" if pr.get("cpu") else "") + ")")
        L.append(f"| {md(t['target'])} | {meas} | {lim} | {t['status']} |")

    L.append("\n## Correctness\n")
    L.append("After each receive (every run with `--quick` or `--verify-all`, else the warm-up run), "
             "`rsync -naHAXc --delete --itemize-changes SNAP/ DEST/` must print nothing but the "
             "root directory's line.\n")
    L.append("| case | tool | result | detail |")
    L.append("|---|---|---|---|")
    seen = {}
    for v in data["verification"]:
        k = (v["case"], v["tool"])
        if v["result"] != "ok" or k not in seen:
            seen[k] = v
    for v in seen.values():
        d = v["detail"] if v["result"] != "ok" else f"{v['detail']} itemize line(s), root only"
        L.append(f"| {v['case']} | {md(v['tool'])} | {v['result']} | {md(d)} |")

    errs = [s for s in data["rows"] if "error" in s]
    fails = [v for v in data["verification"] if v["result"] != "ok"]
    if errs or fails:
        L.append("\n## Failures\n")
        for s in errs:
            e = s["error"]
            L.append(f"- **{s['tool']} {s['op']} {s['case']}** (run {e['run']}, exit {e['rc']}):\n")
            L.append("```\n" + e["stderr_tail"].rstrip() + "\n```")
        for v in fails:
            L.append(f"- **verify {v['tool']} {v['case']}**: {v['detail']}")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def chart_bars(data):
    """(label, ratio, limit or None) per comparison with a wall ratio, for the chart."""
    limits = {}
    for tid, case, arow, prow, metric, limit, _ in TARGETS:
        if metric == "wall":
            limits[(case, f"{arow[1]} ({arow[0]})", f"{prow[1]} ({prow[0]})")] = limit
    bars = []
    for c in data["comparisons"]:
        if c["wall_ratio"] is None:
            continue
        (aop, atool), (pop, ptool) = c["anysend_key"], c["peer_key"]
        if aop == pop:
            label = f"{c['case']}, {aop}: {atool} / {ptool}"
        elif aop == "e2e":
            label = f"{c['case']}: {atool} / {ptool}"
        else:
            label = f"{c['case']}: {atool} {aop} / {ptool} {pop}"
        bars.append((label, c["wall_ratio"], limits.get((c["case"], c["anysend"], c["peer"]))))
    return bars


def write_png(bars, title, xlabel, path):
    if not bars:
        bars = [("no comparison could be measured", 0.0, None)]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from minipng import bar_chart
        bar_chart(bars, title, xlabel.replace(", log scale", " (linear, cut at 4x)"), path)
        return
    n = len(bars)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.38 * n))
    ys = list(range(n))[::-1]
    colors = []
    for _, r, lim in bars:
        ok = r <= (lim if lim is not None else 1.0)
        colors.append("#2e8b57" if ok else "#c0392b")
    ax.barh(ys, [b[1] for b in bars], left=0.001, color=colors, height=0.65)
    ax.set_yticks(ys)
    ax.set_yticklabels([b[0] for b in bars], fontsize=8)
    ax.axvline(1.0, color="black", linewidth=1, linestyle="-")
    cases = [b[0].split(":")[0].split(",")[0] for b in bars]
    for i in range(1, n):
        if cases[i] != cases[i - 1]:
            ax.axhline(ys[i] + 0.5, color="#999999", linewidth=0.6, linestyle="--")
    for y, (_, r, lim) in zip(ys, bars):
        ax.text(r, y, f" {r:.2f}×", va="center", fontsize=8)
        if lim is not None:
            ax.plot([lim, lim], [y - 0.4, y + 0.4], color="#1f4e9c", linewidth=2.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("case: anysend row / peer row")
    ax.set_title(title, fontsize=9)
    # log scale: 0.5x and 2x are equally far from 1.0, and one outlier does not flatten the rest
    lo = min(0.05, min(b[1] for b in bars if b[1] > 0) / 1.5) if any(b[1] > 0 for b in bars) else 0.05
    ax.set_xscale("log")
    ax.set_xlim(lo, max(2.0, max(b[1] for b in bars) * 2.0))
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    ticks = [t for t in (0.01, 0.03, 0.1, 0.3, 0.5, 1, 2, 3, 5, 10, 30, 100)
             if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color="#2e8b57", label="meets target (or ≤ 1.0 without one)"),
                       Patch(color="#c0392b", label="misses target (or > 1.0)"),
                       Line2D([0], [0], color="#1f4e9c", lw=2.5, label="target")],
              fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def title_for(data, what):
    m = data["machine"]
    return (f"{what} — {data['mode']} run {data['date']}\n"
            f"{machine_line(m)}; warm cache, median of {data['runs']}")


# ---------------------------------------------------------------------------------------------
def build_walk(meta, timings):
    rows, order = load_rows(timings)
    summ = [summarize(k, rows[k]) for k in order]
    by = {(s["case"], s["tool"]): s for s in summ}
    comps = []
    for case in ("unchanged", "changed-1%"):
        for tool in ("anysend -n", "anysend -n --full-walk"):
            a, p = by.get((case, tool)), by.get((case, "rsync -a -n --delete"))
            if a and p:
                comps.append({"case": case, "anysend": f"{tool} (scan)",
                              "peer": "rsync -a -n --delete (scan)",
                              "wall_ratio": ratio(a["wall_median_s"], p["wall_median_s"]),
                              "bytes_ratio": None})
    u = next((c for c in comps if c["case"] == "unchanged" and c["anysend"] == "anysend -n (scan)"),
             None)
    uf = next((c for c in comps if c["case"] == "unchanged" and "--full-walk" in c["anysend"]), None)
    targets = [{"id": "walk-unchanged", "case": "unchanged", "metric": "wall", "limit": 0.3,
                "target": "unchanged tree: `anysend -n` ≤ 0.3× `rsync -a -n --delete` wall time",
                "ratio": u and u["wall_ratio"],
                "status": "n/a" if not u or u["wall_ratio"] is None else
                ("met" if u["wall_ratio"] <= 0.3 else "missed")}]
    if uf:
        targets.append({"id": "walk-unchanged-full", "case": "unchanged", "metric": "wall",
                        "limit": 0.3, "ratio": uf["wall_ratio"],
                        "target": "the same with `--full-walk` (every entry compared; what a "
                                  "non-btrfs snapshot pair gets)",
                        "status": "n/a" if uf["wall_ratio"] is None else
                        ("met" if uf["wall_ratio"] <= 0.3 else "missed")})
    for s in summ:
        if s["tool"].startswith("anysend"):
            kb = s["maxrss_kb"]
            targets.append({"id": f"rss:{s['case']}:{s['tool']}", "case": s["case"], "metric": "rss",
                            "limit": 64.0, "ratio": None if kb is None else kb / 1024,
                            "target": f"peak RSS ≤ 64 MiB: {s['tool']} ({s['case']})",
                            "status": "n/a" if kb is None or "error" in s else
                            ("met" if kb * 1024 <= RSS_LIMIT else "missed")})
    return {"kind": "walk", **meta, "warm_cache": True,
            "method": f"warm cache, one warm-up run then the median of {meta['runs']} timed runs",
            "rows": summ, "comparisons": comps, "targets": targets}


def write_walk_md(data, path):
    m = data["machine"]
    L = [f"# anysend walk benchmark (diff-core), {data['date']}\n",
         f"- machine: {machine_line(m)}",
         f"- tools: {m.get('rsync')}; {m.get('anysend') or 'anysend'} (commit {data.get('commit')})",
         f"- tree: {data['dataset']['s1']['entries']:,} entries on btrfs "
         f"({data['dataset']['s1']['files']:,} files); snapshots s1, s2 (no change), s3 (1% of "
         f"files edited in place: {data['dataset'].get('changed_files')} files)",
         f"- method: {data['method']}; caches never dropped\n",
         "| case | tool | wall median | min / max | peak RSS | stream bytes |",
         "|---|---|---:|---:|---:|---:|"]
    for s in data["rows"]:
        err = " **FAILED**" if "error" in s else ""
        mm = "—" if s["wall_min_s"] is None else f"{fmt_s(s['wall_min_s'])} / {fmt_s(s['wall_max_s'])}"
        L.append(f"| {CASE_TITLE.get(s['case'], s['case'])} | {s['tool']}{err} | "
                 f"{fmt_s(s['wall_median_s'])} | {mm} | {fmt_rss(s['maxrss_kb'])} | {fmt_b(s['bytes'])} |")
    L += ["", "| case | anysend | ratio to rsync -a -n --delete |", "|---|---|---:|"]
    for c in data["comparisons"]:
        L.append(f"| {CASE_TITLE.get(c['case'])} | {c['anysend']} | {fmt_r(c['wall_ratio'])} |")
    L += ["", "## Targets (measured, never asserted)", "", "| target | measured | limit | status |",
          "|---|---:|---:|---|"]
    for t in data["targets"]:
        meas = ("—" if t["ratio"] is None else
                (f"{t['ratio']:.1f} MiB" if t["metric"] == "rss" else fmt_r(t["ratio"])))
        lim = "64 MiB" if t["metric"] == "rss" else f"{t['limit']}×"
        L.append(f"| {md(t['target'])} | {meas} | {lim} | {t['status']} |")
    est = data.get("anysend_n_output") or {}
    if any(est.values()):
        L += ["", "## What `anysend -n` printed", ""]
        for case, text in est.items():
            if text:
                L += [f"{CASE_TITLE.get(case, case)}:", "", "```", text.rstrip(), "```", ""]
    errs = [s for s in data["rows"] if "error" in s]
    if errs:
        L.append("\n## Failures\n")
        for s in errs:
            e = s["error"]
            L.append(f"- **{s['tool']} {s['case']}** (run {e['run']}, exit {e['rc']}):\n")
            L.append("```\n" + e["stderr_tail"].rstrip() + "\n```")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["run", "walk"], required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--timings", required=True)
    ap.add_argument("--verify")
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--png")
    a = ap.parse_args()
    with open(a.meta) as f:
        meta = json.load(f)
    if a.kind == "run":
        data = build_run(meta, a.timings, a.verify)
        write_run_md(data, a.md)
        if a.png:
            write_png(chart_bars(data), title_for(data, "anysend wall time / peer's (lower is better)"),
                      "wall-time ratio anysend / peer, log scale (1× = same speed; left of it anysend is faster)", a.png)
    else:
        data = build_walk(meta, a.timings)
        write_walk_md(data, a.md)
    with open(a.json, "w") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
