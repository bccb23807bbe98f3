#!/usr/bin/env python3
"""Turn docs/tree.md into the roff page tenki-fs(5).

Only the Markdown that docs/tree.md uses: "#"/"##" headings, paragraphs,
"- " lists, pipe tables (rendered as tagged paragraphs: first cell, then
the rest), fenced code, `code` and **bold**.
  usage: md2man.py SECTION NAME < in.md > out.N
"""
import re
import sys


def esc(s):
    s = s.replace("\\", "\\e")
    s = s.replace("-", "\\-")
    return s


def inline(s):
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", s)):
        if i % 2:
            out.append("\\fB" + esc(part) + "\\fR")
        else:
            part = esc(part)
            part = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", part)
            out.append(part)
    line = "".join(out)
    if line.startswith(".") or line.startswith("'"):
        line = "\\&" + line
    return line


def main():
    section, name = sys.argv[1], sys.argv[2]
    lines = sys.stdin.read().split("\n")
    out = ['.\\" Generated from docs/tree.md by scripts/md2man.py: edit those.',
           ".TH %s %s 2026-11-23 \"tenki 0.1.0\"" % (name.upper(), section)]
    i = 0
    para = []

    def flush():
        if para:
            out.append(".PP")
            out.extend(inline(p) for p in para)
            para.clear()

    while i < len(lines):
        l = lines[i]
        if l.startswith("```"):
            flush()
            out.append(".PP\n.nf\n.RS")
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append("\\&" + esc(lines[i]))
                i += 1
            out.append(".RE\n.fi")
        elif l.startswith("# "):
            flush()
            title = re.sub(r"\s*\(.*\)$", "", l[2:])
            out.append(".SH NAME")
            out.append("%s \\- %s" % (name, esc(title)))
        elif l.startswith("## ") or l.startswith("### "):
            flush()
            out.append(".SH " + inline(l.lstrip("#").strip().upper()))
        elif l.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                    rows.append(cells)
                i += 1
            i -= 1
            for cells in rows[1:] if rows and all(
                    not c or "`" not in c for c in rows[0]) else rows:
                out.append(".TP")
                out.append(inline(cells[0]))
                out.append(inline(" ".join(c for c in cells[1:] if c)))
        elif l.startswith("- "):
            flush()
            item = [l[2:]]
            while i + 1 < len(lines) and lines[i + 1].startswith("  ") \
                    and lines[i + 1].strip():
                i += 1
                item.append(lines[i].strip())
            out.append(".IP \\(bu 2")
            out.extend(inline(x) for x in item)
        elif not l.strip():
            flush()
        else:
            para.append(l.strip())
        i += 1
    flush()
    out.append(".SH SEE ALSO")
    out.append(".BR tenki (1),")
    out.append(".BR tenkid (8),")
    out.append(".BR tenki-agent (8)")
    print("\n".join(out))


main()
