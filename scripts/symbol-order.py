"""Maps valgrind lackey superblock traces (SB <addr> lines) to the
function symbols of a binary, in first-execution order, for the linker's
--symbol-ordering-file. Usage: symbol-order.py BINARY OUT TRACE...

With --faults: appends to OUT the functions at the text addresses of
`perf script -F comm,addr` page-fault lines (comm skiff) that OUT lacks.
Usage: symbol-order.py --faults BINARY OUT FAULTS..."""
import sys, subprocess, bisect
faults = sys.argv[1] == "--faults"
if faults:
    del sys.argv[1]
binary = sys.argv[1]
out = sys.argv[2]
traces = sys.argv[3:]
syms = []
for l in subprocess.run(["nm", "-n", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
    p = l.split()
    if len(p) == 3 and p[1] in "tTwW":
        syms.append((int(p[0], 16), p[2]))
addrs = [a for a, _ in syms]
seen, order = set(), []
text_lo, text_hi = syms[0][0], syms[-1][0] + 0x100000
if faults:
    have = open(out).read().split()
    known = set(have)
    new = []
    for f in traces:
        for l in open(f, errors="replace"):
            p = l.split()
            if len(p) < 2 or p[0] != "skiff":
                continue
            a = int(p[-1], 16)
            if a < text_lo or a > text_hi:
                continue
            i = bisect.bisect_right(addrs, a) - 1
            if i >= 0 and syms[i][1] not in known:
                known.add(syms[i][1])
                new.append(syms[i][1])
    open(out, "w").write("\n".join(have + new) + "\n")
    print(len(new), "functions added from page faults")
    sys.exit(0)
for f in traces:
    for l in open(f, errors="replace"):
        if not l.startswith("SB "):
            continue
        a = int(l.split()[1], 16)
        if a < text_lo or a > text_hi:
            continue
        i = bisect.bisect_right(addrs, a) - 1
        if i < 0:
            continue
        name = syms[i][1]
        if name not in seen:
            seen.add(name)
            order.append(name)
open(out, "w").write("\n".join(order) + "\n")
print(len(order), "functions of", len(syms))
