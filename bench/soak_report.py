"""The soak run's report (bench/soak.sh runs it at the end): from the
per-minute samples and the store's items by kind, a plot (docs/soak.png)
and the tables between the soak markers of docs/reliability.md.

  soak_report.py SAMPLES KINDS PNG DOC SUMMARY MINUTES RATE
"""

import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

samples, kinds_file, png, doc, summary, minutes, rate = sys.argv[1:]
rows = [line.rstrip("\n").split("\t") for line in open(samples)][1:]
m = [int(r[0]) for r in rows]
rss = [int(r[1]) / 1024 for r in rows]
fds = [int(r[2]) for r in rows]
store = [int(r[3]) / 1024 for r in rows]
result = json.load(open(summary))

fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
for ax, ys, label in zip(axes, [rss, fds, store],
                         ["RSS (MiB)", "open file descriptors", "store on disk (MiB)"]):
    ax.plot(m, ys, marker="o", markersize=3)
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0, top=max(ys) * 1.25 + 1)
    ax.grid(alpha=0.3)
axes[-1].set_xlabel("minute")
fig.suptitle(f"passgate soak: {result['flows']} sign-in flows in {minutes} min")
fig.tight_layout()
fig.savefig(png, dpi=90)

table = ["| minute | RSS (MiB) | open fds | store (MiB) |", "|---:|---:|---:|---:|"]
table += [f"| {a} | {b:.1f} | {c} | {d:.2f} |" for a, b, c, d in zip(m, rss, fds, store)]

# Live items by kind, to say what any growth is made of. Keys whose first
# word is followed by a person, a client, an address or a key id are
# counted together.
kinds: dict[str, dict[int, int]] = {}
for line in list(open(kinds_file))[1:]:
    minute, kind, items, _ = line.rstrip("\n").split("\t")
    head = kind.partition("/")[0]
    if head in ("clients", "consent", "users", "ratelimit", "authz-pending", "signing-keys"):
        kind = f"{head}/…"
    per = kinds.setdefault(kind, {})
    per[int(minute)] = per.get(int(minute), 0) + int(items)
shown = sorted({0, *range(1, int(minutes) + 1, 10), int(minutes)})
kind_table = ["| live items by kind (key / sort key) | " + " | ".join(f"minute {x}" for x in shown) + " |",
              "|---|" + "---:|" * len(shown)]
for kind, per in sorted(kinds.items()):
    kind_table.append(f"| `{kind}` | " + " | ".join(str(per.get(x, 0)) for x in shown) + " |")

flows, seconds = result["flows"], result["seconds"]
block = "\n".join([
    "<!-- soak:begin (written by bench/soak.sh) -->",
    f"{minutes} minutes at up to {rate} flows/s: {flows} whole sign-in flows "
    f"({flows / max(seconds, 1):.2f}/s), {result.get('registrations', 0)} unused registrations, "
    f"{result['failures']} failures; {result.get('people', '?')} people on "
    f"{result.get('browsers', '?')} browsers, {result.get('clients', '?')} clients.",
    "",
    *table,
    "",
    *kind_table,
    "",
    "![RSS, file descriptors and store size per minute](soak.png)",
    "<!-- soak:end -->",
])
text = open(doc).read()
text = re.sub(r"<!-- soak:begin.*?<!-- soak:end -->", lambda _: block, text, flags=re.S)
open(doc, "w").write(text)
print("\n".join(table))
print("\n".join(kind_table))
