"""Tables as text: aligned columns for the terminal, markdown, CSV (long format: one row per number), LaTeX."""
import csv
import io

from .tables import Stat


def _fmt(v, std=True, signed=False, latex=False):
    if v is None:
        return "-" if not latex else "--"
    if isinstance(v, Stat):
        if std and v.n > 1:
            return f"{v.mean:.2f} $\\pm$ {v.std:.2f}" if latex else f"{v.mean:.2f} ± {v.std:.2f}"
        return f"{v.mean:.2f}"
    if isinstance(v, float):
        return f"{v:+.2f}" if signed else f"{v:.2f}"
    return str(v)


def _cells(table, std, latex=False):
    out = []
    for row in table.rows:
        out.append([_fmt(v, std, signed=table.columns[i].startswith("Δ") or str(row[1] if len(row) > 1 else "")
                         .endswith(" Δ") or str(row[0]).endswith(" Δ"), latex=latex)
                    for i, v in enumerate(row)])
    return out


def _is_text_col(table, i):
    return all(isinstance(r[i], str) or r[i] is None for r in table.rows) and i < 2


def render(tables, fmt="terminal", std=True):
    if fmt == "csv":
        buf = io.StringIO()
        fields = ["protocol", "method", "dataset", "shots", "metric", "mean", "std", "n_seeds", "published",
                  "diff", "source"]
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for t in tables:
            w.writerows(t.long)
        return buf.getvalue()
    chunks = []
    for t in tables:
        cells = _cells(t, std, latex=fmt == "latex")
        if fmt == "markdown":
            lines = [f"**{t.title}**", "", "| " + " | ".join(t.columns) + " |",
                     "|" + "|".join("---" if _is_text_col(t, i) else "---:" for i in range(len(t.columns))) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in cells]
            lines += [""] + [f"- {n}" for n in t.notes]
        elif fmt == "latex":
            def esc(s):
                return (s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%")
                        .replace("&", "\\&").replace("#", "\\#").replace("Δ", "$\\Delta$").replace("±", "$\\pm$"))
            spec = "".join("l" if _is_text_col(t, i) else "r" for i in range(len(t.columns)))
            lines = [f"% {t.title}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                     " & ".join(esc(c) for c in t.columns) + " \\\\", "\\midrule"]
            prev = None
            for r in cells:
                first = r[0]
                if prev is not None and first and first != prev and len(t.columns) > 2 and t.columns[0] == "Dataset":
                    lines.append("\\midrule")
                prev = first or prev
                lines.append(" & ".join(c if "$" in c else esc(c) for c in r) + " \\\\")
            lines += ["\\bottomrule", "\\end{tabular}"] + [f"% {n}" for n in t.notes]
        else:
            widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(t.columns)]
            def line(vals):
                return "  ".join(v.ljust(w) if _is_text_col(t, i) else v.rjust(w)
                                 for i, (v, w) in enumerate(zip(vals, widths))).rstrip()
            lines = [t.title, line(t.columns), "  ".join("-" * w for w in widths)]
            prev = None
            for r in cells:
                if prev is not None and r[0] and r[0] != prev and t.columns[0] == "Dataset":
                    lines.append("")
                prev = r[0] or prev
                lines.append(line(r))
            lines += [f"  note: {n}" for n in t.notes]
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + ("\n" if chunks else "")
