"""The figures of the short answers (``SHORT_ANSWER_TEMPLATE.md``, in French), regenerated from
the project's committed reports.

    python -m hw5kit.answers            # rewrite every figure block from the reports
    python -m hw5kit.answers --check    # exit 1 when a block is not what the reports give

A figure block is the text between ``<!-- fig:NAME:begin -->`` and ``<!-- fig:NAME:end -->``;
``FIGURES`` lists each block, the reports it is made from and how. The prose around the blocks
is written by hand; only the blocks are rewritten. Sources:

* ``reports/containers/rebuild.json``: ``python -m hw5kit.containers measure``;
* ``reports/bench/results.json``: ``python -m hw5kit.bench run`` (``nox -s bench``);
* ``reports/hop/results.json``: ``python -m hw5kit.bench hop``;
* ``reports/quantization/results.json``: ``python -m hw5kit.bench quant`` (``nox -s quant``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bench import procstats
from .paths import ROOT

ANSWERS = "SHORT_ANSWER_TEMPLATE.md"
MiB = 2**20
BLOCK_RE = re.compile(
    r"<!-- fig:(?P<name>[a-z0-9-]+):begin -->\n(?P<body>.*?)<!-- fig:(?P=name):end -->", re.S
)


class AnswersError(Exception):
    """A report or a block is missing or unreadable; the message says which and what to run."""


# ---- French numbers ------------------------------------------------------------------------
def num(value: float, digits: int = 1) -> str:
    """``1 097,5``: a space between thousands, a decimal comma."""
    text = f"{value:,.{digits}f}"
    return text.replace(",", " ").replace(".", ",")


def sec(value: float, digits: int = 1) -> str:
    return f"{num(value, digits)} s"


def ms(value: float | None, digits: int = 1) -> str:
    return "n/d" if value is None else f"{num(value, digits)} ms"


def mib(n_bytes: float, digits: int = 0) -> str:
    return f"{num(n_bytes / MiB, digits)} Mio"


def mb(n_bytes: float) -> str:
    return f"{num(n_bytes / 1e6, 0 if n_bytes >= 10e6 else 1)} Mo"


def pct(value: float | None) -> str:
    return "n/d" if value is None else f"{num(100 * value, 1)} %"


def times(a: float, b: float) -> str:
    return f"{num(a / b, 2)}×"


# ---- reports -------------------------------------------------------------------------------
REPORTS = {
    "containers": ("reports/containers/rebuild.json", "python -m hw5kit.containers measure"),
    "bench": ("reports/bench/results.json", "python -m hw5kit.bench run"),
    "hop": ("reports/hop/results.json", "python -m hw5kit.bench hop"),
    "quant": ("reports/quantization/results.json", "python -m hw5kit.bench quant"),
}


def load_report(root: Path, name: str) -> dict:
    rel, command = REPORTS[name]
    path = root / rel
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise AnswersError(f"{rel} is missing: run `{command}` to make it") from None
    except (OSError, ValueError) as exc:
        raise AnswersError(f"{rel} cannot be read ({exc}): run `{command}` again") from None


def load_of(values: list) -> str:
    """The range of the 1-minute load averages given (triples, or 1-minute values)."""
    first = [v if isinstance(v, int | float) else v[0] for v in values if v]
    return f"{num(min(first), 1)} à {num(max(first), 1)}"


# ---- the figures ---------------------------------------------------------------------------
SCENARIOS = {
    "no change": "aucune modification",
    "app code change": "code de l'app",
    "shared package change": "paquet partagé",
    "base change": "dépendances de la base",
}


def q2_rebuild(reports: dict) -> str:
    from .containers.measure import Report

    report = Report.from_json(reports["containers"])
    loads = [r.load_before for s in report.steps for r in s.runs]
    loads += [r.load_after for s in report.steps for r in s.runs]
    lines = [
        f"Mesuré par `python -m hw5kit.containers measure --repeat {report.repeat}` "
        f"({report.engine.split(';')[0]}, {report.machine['cpus']} CPU partagés, charge "
        f"moyenne sur 1 min de {load_of(loads)}), le {report.started} ; médiane de "
        f"{report.repeat} reconstructions (min–max). Rapport complet : "
        "[reports/containers/rebuild.md](reports/containers/rebuild.md).",
        "",
        "| service | modification avant la reconstruction | image de base | total | "
        "étapes servies par le cache |",
        "|---|---|---|---|---|",
    ]
    for s in report.steps:
        rebuilt = any(r.base_rebuilt for r in s.runs)
        base = f"reconstruite : {sec(s.median('base_seconds'))}" if rebuilt else "sautée"
        spread = f" ({num(min(r.total for r in s.runs))}–{num(max(r.total for r in s.runs))})"
        changed = (
            f"`{s.changed}` ({SCENARIOS.get(s.scenario, s.scenario)})"
            if s.changed
            else (SCENARIOS.get(s.scenario, s.scenario))
        )
        lines.append(
            f"| {s.service} | {changed} | {base} | **{sec(s.total)}**{spread} "
            f"| {s.runs[0].cached} sur {s.runs[0].steps} |"
        )
    return "\n".join(lines)


def _sizes_rows(containers: dict) -> list[str]:
    sizes, bases = containers["sizes"], containers["bases"]
    rows = []
    for ref in ("hw5-backend_v1:measure", "hw5-frontend_v1:measure", "hw5-base-all:measure"):
        if ref not in sizes:
            continue
        base = bases.get(ref)
        extra = f"{mb(sizes[ref] - sizes[base])} au-dessus de `{base}`" if base in sizes else ""
        rows.append(f"| `{ref}` | {mb(sizes[ref])} | {extra} |")
    return rows


def q4_coldstart(reports: dict) -> str:
    bench, containers = reports["bench"], reports["containers"]
    ours = bench["subjects"]["ours"]["efficientnet_lite0"]
    ref = bench["subjects"]["reference"]["efficientnet_lite0"]
    first = bench.get("first_start")
    meta = bench["meta"]
    lines = [
        f"Démarrage à froid mesuré par `{meta['command']}` le {meta['date']} (commit "
        f"{meta.get('git_commit', '?')}, {meta['cpus']} CPU, charge moyenne jusqu'à "
        f"{num(max(meta['load_average_before'][0], meta['load_average_after'][0]), 1)}) : du "
        "lancement du processus à la première réponse 200 de `/readyz` (ou de `/hello` pour le "
        "backend du cours), sans réseau. Rapport : [reports/bench/README.md]"
        "(reports/bench/README.md).",
        "",
        "| démarrage | durée |",
        "|---|---:|",
        f"| notre backend_v1 (efficientnet_lite0), poids et export ONNX intégrés à l'image "
        f"| **{sec(ours['cold_start_s'], 2)}** |",
    ]
    if first:
        lines.append(
            f"| le même sans export ONNX intégré (torch importé, export au démarrage) "
            f"| {sec(first['cold_start_s'], 2)} |"
        )
    lines.append(
        f"| backend du cours (torch eager, 2 workers chargeant chacun le modèle) "
        f"| {sec(ref['cold_start_s'], 2)} |"
    )
    if bench.get("v2"):
        lines.append(f"| notre backend_v2, trois modèles | {sec(bench['v2']['cold_start_s'], 2)} |")
    lines += [
        "",
        f"Tailles des images (non compressées, {containers['engine'].split(';')[0]}, "
        "[reports/containers/rebuild.md](reports/containers/rebuild.md)) :",
        "",
        "| image | taille | dont |",
        "|---|---:|---|",
        *_sizes_rows(containers),
    ]
    return "\n".join(lines)


def q5_hop(reports: dict) -> str:
    hop = reports["hop"]
    meta, services, hops = hop["meta"], hop["services"], hop["hop"]
    plan = meta["plan"]
    loads = procstats.load_samples(meta)
    back, front = services["backend_v1"], services["frontend_v1"]
    page = hop["latency"].get("url", {}).get("page")
    served = ", après avoir servi la page à un navigateur" if page else ""
    lines = [
        f"Mesuré par `{meta['command']}` le {meta['date']} (commit "
        f"{meta.get('git_commit', '?')}, {meta['cpus']} CPU, charge moyenne de "
        f"{load_of(loads)}) : un vrai backend_v1 (gunicorn) et un vrai frontend_v1 (Streamlit) "
        f"sur 127.0.0.1, modèle {plan['model']}, {plan['rounds']} requêtes mesurées par chemin "
        "et par mode, chemins alternés requête par requête. Rapport : "
        "[reports/hop/README.md](reports/hop/README.md).",
        "",
        "| service | mémoire résidente après démarrage | après les requêtes | processus |",
        "|---|---:|---:|---:|",
        f"| backend_v1 (gunicorn : maître + worker, modèle chargé) "
        f"| {mib(back['after_start']['rss_bytes'])} | **{mib(back['after_run']['rss_bytes'])}** "
        f"| {back['after_run']['processes']} |",
        f"| frontend_v1 (Streamlit{served}) "
        f"| {mib(front['after_start']['rss_bytes'])} | **{mib(front['after_run']['rss_bytes'])}** "
        f"| {front['after_run']['processes']} |",
        "",
        "| mode | frontend → backend (code client du frontend), médiane | temps propre du "
        "backend, médiane | **le saut** : aller-retour − temps du backend, médiane | même "
        "travail dans un seul processus, médiane |",
        "|---|---:|---:|---:|---:|",
    ]
    modes = {"url": "image par URL", "upload": "image envoyée (octets)"}
    for mode, h in hops.items():
        inproc = hop["latency"][mode]["inprocess"]["p50_ms"]
        lines.append(
            f"| {modes.get(mode, mode)} | {ms(h['client_p50_ms'])} | {ms(h['backend_p50_ms'])} "
            f"| **{ms(h['hop_ms'])}** | {ms(inproc)} |"
        )
    if page:
        lines += [
            "",
            f"Tout le parcours d'une personne (Chromium sans tête sur la vraie page Streamlit, "
            f"du clic sur « Classer l'image » à l'étiquette affichée, {page['n']} fois) : "
            f"médiane {ms(page['p50_ms'], 0)}.",
        ]
    return "\n".join(lines)


def q7_models(reports: dict) -> str:
    bench, hop, quant = reports["bench"], reports["hop"], reports["quant"]
    ours = bench["subjects"]["ours"]["efficientnet_lite0"]
    ref = bench["subjects"]["reference"]["efficientnet_lite0"]
    v2 = bench["v2"]
    meta = bench["meta"]
    lines = [
        f"Mémoire mesurée sous charge par `{meta['command']}` le {meta['date']} "
        "([reports/bench/README.md](reports/bench/README.md)) :",
        "",
        "| backend | modèles en mémoire | mémoire résidente | processus | démarrage à froid |",
        "|---|---|---:|---:|---:|",
        f"| backend du cours (2 workers, un modèle chacun, torch eager) | efficientnet_lite0 ×2 "
        f"| {mib(ref['rss_bytes'])} | {ref['processes']} | {sec(ref['cold_start_s'], 2)} |",
        f"| notre backend_v1 | efficientnet_lite0 | {mib(ours['rss_bytes'])} "
        f"| {ours['processes']} | {sec(ours['cold_start_s'], 2)} |",
        f"| notre backend_v2 | {', '.join(v2['models'])} | **{mib(v2['rss_bytes'])}** "
        f"| {v2['processes']} | {sec(v2['cold_start_s'], 2)} |",
        "",
    ]
    files = [
        f"{model} {mib(entry['fp32_onnx_bytes'], 1)}" for model, entry in quant["models"].items()
    ]
    client = hop["latency"]["upload"]["inprocess"]
    lines.append(
        f"Fichiers ONNX fp32 des modèles : {', '.join(files)} "
        "([reports/quantization/README.md](reports/quantization/README.md)). Charger "
        f"efficientnet_lite0 (son export ONNX intégré) a pris {sec(hop['model_load_s'], 2)} "
        f"dans un processus déjà démarré, pour une classification de {ms(client['p50_ms'])} "
        "(médiane, [reports/hop/README.md](reports/hop/README.md))."
    )
    return "\n".join(lines)


def q9_quant(reports: dict) -> str:
    quant = reports["quant"]
    meta = quant["meta"]
    loads = procstats.load_samples(meta)
    lines = [
        f"Mesuré par `{meta['command']}` le {meta['date']} (commit "
        f"{meta.get('git_commit', '?')}, {meta['cpus']} CPU {meta.get('cpu_model', '')}, "
        f"onnxruntime {meta.get('onnxruntime', '?')}, {meta.get('threads')} fils d'inférence, "
        f"charge moyenne de {load_of(loads)}) ; fp32 et int8 chronométrés en alternance. Rapport "
        "complet : [reports/quantization/README.md](reports/quantization/README.md).",
        "",
        "| modèle | fichier ONNX fp32 → int8 | passe avant, médiane fp32 / int8 | pipeline "
        "complet (une photo), médiane fp32 / int8 | débit, lot de 1 fp32 / int8 | top-1 "
        "identique à fp32 : photos / recadrages | recouvrement top-5 (recadrages) | photos "
        "étiquetées correctes fp32 / int8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, e in quant["models"].items():
        s32, s8 = e["speed"]["fp32"], e["speed"]["int8"]
        b32, b8 = s32["forward_throughput"]["1"], s8["forward_throughput"]["1"]
        a32, a8 = e["accuracy"]["fp32"], e["accuracy"]["int8"]
        lines.append(
            f"| {model} | {mib(e['fp32_onnx_bytes'], 1)} → {mib(e['int8_onnx_bytes'], 1)} "
            f"({times(e['fp32_onnx_bytes'], e['int8_onnx_bytes'])} plus petit) "
            f"| {ms(s32['forward_p50_ms'], 2)} / {ms(s8['forward_p50_ms'], 2)} "
            f"(**{times(s32['forward_p50_ms'], s8['forward_p50_ms'])}**) "
            f"| {ms(s32['e2e_p50_ms'], 2)} / {ms(s8['e2e_p50_ms'], 2)} "
            f"({times(s32['e2e_p50_ms'], s8['e2e_p50_ms'])}) "
            f"| {num(b32, 0)} / {num(b8, 0)} img/s "
            f"| {e['photos']['top1_count']}/{e['photos']['n']} / {pct(e['crops']['top1'])} "
            f"de {e['crops']['n']} | {pct(e['crops']['topk_overlap'])} "
            f"| {a32['correct']}/{a32['of']} / {a8['correct']}/{a8['of']} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Figure:
    reports: tuple[str, ...]
    render: Callable[[dict], str]


FIGURES: dict[str, Figure] = {
    "q2-rebuild": Figure(("containers",), q2_rebuild),
    "q4-coldstart": Figure(("bench", "containers"), q4_coldstart),
    "q5-hop": Figure(("hop",), q5_hop),
    "q7-models": Figure(("bench", "hop", "quant"), q7_models),
    "q9-quant": Figure(("quant",), q9_quant),
}


# ---- the file ------------------------------------------------------------------------------
def render_blocks(root: Path = ROOT) -> dict[str, str]:
    """Every figure's text, from the reports under ``root``."""
    cache: dict[str, dict] = {}
    out = {}
    for name, figure in FIGURES.items():
        for report in figure.reports:
            if report not in cache:
                cache[report] = load_report(root, report)
        try:
            out[name] = figure.render(cache)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            sources = ", ".join(REPORTS[r][0] for r in figure.reports)
            raise AnswersError(
                f"figure {name}: {sources} lacks {exc!r}; the report is older than this code, "
                f"run `{' / '.join(REPORTS[r][1] for r in figure.reports)}` again"
            ) from None
    return out


def update(text: str, blocks: dict[str, str]) -> str:
    """``text`` with every figure block replaced; every block of ``FIGURES`` must be present
    once, and no other."""
    found = [m.group("name") for m in BLOCK_RE.finditer(text)]
    unknown = sorted(set(found) - set(blocks))
    missing = sorted(set(blocks) - set(found))
    repeated = sorted({n for n in found if found.count(n) > 1})
    problems = []
    if missing:
        problems.append(f"no block for {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown block(s) {', '.join(unknown)} (known: {', '.join(blocks)})")
    if repeated:
        problems.append(f"block(s) repeated: {', '.join(repeated)}")
    if problems:
        raise AnswersError(
            "; ".join(problems) + ": a block is <!-- fig:NAME:begin --> and <!-- fig:NAME:end "
            "--> on lines of their own"
        )
    return BLOCK_RE.sub(
        lambda m: (
            f"<!-- fig:{m['name']}:begin -->\n{blocks[m['name']]}\n<!-- fig:{m['name']}:end -->"
        ),
        text,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hw5kit.answers",
        description="Rewrite the figure blocks of the short answers from the committed reports "
        "(reports/containers, reports/bench, reports/hop, reports/quantization).",
    )
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    p.add_argument("--file", type=Path, help=f"the answers (default: ROOT/{ANSWERS})")
    args = p.parse_args(argv)
    path = args.file or args.root / ANSWERS
    try:
        text = path.read_text()
        new = update(text, render_blocks(args.root))
    except FileNotFoundError:
        print(f"error: {path} not found", file=sys.stderr)
        return 2
    except AnswersError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    if new == text:
        print(f"{path}: every figure matches the reports")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            text.splitlines(), new.splitlines(), "committed", "from the reports", lineterm="", n=0
        )
        print("\n".join(list(diff)[:60]))
        print(
            f"{path} is stale: its figures are not what the reports give; run "
            "python -m hw5kit.answers",
            file=sys.stderr,
        )
        return 1
    path.write_text(new)
    print(f"{path}: figures rewritten from the reports")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
