"""Render the README's figures from the files that hold them: ``python benchmarks/render_readme.py [--check]``.

Every measured number in ``README.md`` sits between marker comments::

    <!-- results:NAME -->
    ...generated, never edited by hand...
    <!-- /results -->

and is rendered here from its source:

=============  ==========================================================================================
NAME           source
=============  ==========================================================================================
``model``      ``fer_core/default_model/report.json`` + ``config.json`` (FER+ Valid, ``fer_train.evaluate``)
               and ``benchmarks/results/ferplus_test.json`` (FER+ Test, measured independently)
``classes``    per-class recall on Valid, plain and balanced (``report.json``)
``inference``  ``benchmarks/results/inference.json`` (``benchmarks/bench_inference.py``)
``app``        ``benchmarks/results/app.json`` (``benchmarks/bench_app.py``)
``video``      ``benchmarks/results/video.json`` (``benchmarks/bench_video.py``)
``limits``     the app's main ``FER_*`` limits and their defaults, read from the source of ``fer_app/``
               and ``fer_app/monitoring/`` (a variable in the code but not here, or here but not in the code,
               is an error); ``all_limits`` every one of them (``docs/app.md``)
``login``      monitoring's ``FER_*`` limits, the same way (``docs/monitoring.md``)
=============  ==========================================================================================

The files rendered: ``README.md``, ``docs/app.md`` and ``docs/monitoring.md``. A benchmark writes its results file
(``--results``, default ``benchmarks/results``); then run this script. ``--check`` rewrites nothing
and exits 1 when a file differs from what it would render (or a source is missing, or
``ferplus_test.json`` belongs to other weights than the bundled model's).
Only the standard library is used: no model, no torch.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL_DIR = ROOT / "fer_core" / "default_model"
README = ROOT / "README.md"
#: The files whose results blocks are rendered.
FILES = (README, ROOT / "docs" / "app.md", ROOT / "docs" / "monitoring.md")

BLOCK = re.compile(r"(?P<open><!-- results:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(?P<close><!-- /results -->)", re.S)


class SourceError(RuntimeError):
    """A source file is missing or does not hold what a block needs."""


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SourceError(f"{path.relative_to(ROOT)} is missing: run the benchmark that writes it")
    return json.loads(path.read_text())


def result(name: str) -> dict[str, Any]:
    return load(RESULTS / f"{name}.json")


def f3(x: float) -> str:
    return f"{x:.3f}"


def source_line(doc: dict[str, Any]) -> str:
    """``command`` (date, load average): how and when a results file was measured."""
    run = doc["run"]
    load_avg = max(run["load_1min_at_start"], run["load_1min_at_end"])
    busy = (" **a busy machine** (other work shared the cores): these times are slower than an idle machine's"
            if load_avg > run["cores"] + 0.5 else "")
    return (f"`{doc['command']}` ({run['started_utc'][:10]}, {run['cores']} cores, torch {run['torch'].split('+')[0]}; "
            f"1-minute load average up to {load_avg:.1f}, the benchmark's own threads included; {run['wall_s']:.0f} s)"
            + (f";{busy}" if busy else ""))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the bundled model -------------------------------------------------------------------------


def render_model() -> str:
    report, config = load(MODEL_DIR / "report.json"), load(MODEL_DIR / "config.json")
    test = result("ferplus_test")
    weights = MODEL_DIR / "model.safetensors"
    if test["model_sha256"] != sha256(weights):
        raise SourceError("benchmarks/results/ferplus_test.json measured other weights than "
                          "fer_core/default_model/model.safetensors: measure the new model on Test again")
    bal, tbal, t = report["balanced"], test["results"]["balanced"], test["results"]
    if bal["tau"] != config["tau"] or tbal["tau"] != config["tau"]:
        raise SourceError("the balanced operating point's tau differs between config.json, report.json and "
                          "ferplus_test.json")
    default = "balanced" if config.get("balanced") else "plain"

    def test_cell(value: float | None) -> str:
        return f3(value) if value is not None else "-"

    rows = [
        ("accuracy, plain decisions", f3(report["accuracy"]), test_cell(t["accuracy"])),
        ("UAR (mean per-class recall), plain", f3(report["uar"]), test_cell(t["uar"])),
        (f"accuracy, balanced decisions (tau {bal['tau']:g})", f3(bal["accuracy"]), test_cell(tbal["accuracy"])),
        ("UAR, balanced", f3(bal["uar"]), test_cell(tbal.get("uar"))),
        ("macro-F1, plain / balanced", f"{report['macro_f1']:.3f} / {bal['macro_f1']:.3f}",
         " / ".join(test_cell(x) for x in (t.get("macro_f1"), tbal.get("macro_f1")))),
        (f"ECE (15 bins), raw -> temperature-scaled (T = {report['temperature']:.2f})",
         f"{report['ece_before']:.3f} -> {report['ece_after']:.3f}", test_cell(None)),
    ]
    size_mb = weights.stat().st_size / 1e6
    lines = [
        f"`{config['backbone']}`, {config['input_size']} px {config['color_mode']} input, "
        f"{len(config['labels'])} labels, {size_mb:.1f} MB of weights; its default is **{default} decisions**.",
        "",
        f"| metric | FER+ Valid ({report['n_images']:,} faces, {report['protocol']} protocol) | "
        f"**FER+ Test** (held out) |",
        "|---|---|---|",
        *[f"| {name} | {valid} | {test_value} |" for name, valid, test_value in rows],
        "",
        "Valid is the split the model was selected on; `fer_train.evaluate` measured it when the model was "
        "exported (`fer_core/default_model/report.json`). **Test** was measured once, independently, on these "
        "very weights (their SHA-256 is in `benchmarks/results/ferplus_test.json`): this project's machines do "
        "not hold the Test split, and nothing was chosen on it. Where the split is present, "
        f"`{test['command']}` measures it. {test['note']}",
    ]
    return "\n".join(lines) + "\n"


def render_classes() -> str:
    report = load(MODEL_DIR / "report.json")
    labels = [k for k in report["per_class"] if k not in ("accuracy", "macro avg", "weighted avg")]
    plain = [report["per_class"][k]["recall"] for k in labels]
    balanced = [report["balanced"]["recall"][k] for k in labels]
    support = [int(report["per_class"][k]["support"]) for k in labels]
    config = load(MODEL_DIR / "config.json")
    if config["labels"] != labels:
        raise SourceError("report.json and config.json list different labels")
    return "\n".join([
        "| recall on Valid | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        "| share of Train faces (prior) | " + " | ".join(f"{x:.1%}" for x in config["prior"]) + " |",
        "| Valid faces | " + " | ".join(f"{n:,}" for n in support) + " |",
        "| plain | " + " | ".join(f"{x:.2f}" for x in plain) + " |",
        f"| balanced (tau {report['balanced']['tau']:g}) | " + " | ".join(f"{x:.2f}" for x in balanced) + " |",
    ]) + "\n"


# --- benchmarks ----------------------------------------------------------------------------------


def render_inference() -> str:
    doc = result("inference")
    r = doc["results"]
    rows = [
        ("MTCNN face detection, 640x480 frame", f"{r['mtcnn_640x480_ms']:.1f} ms"),
        ("`predict`, 640x480 frame, 1 face (end to end)", f"{r['predict_640x480_1face_ms']:.1f} ms"),
        ("`predict`, 1200x630 photo, 6 faces (end to end)", f"{r['predict_1200x630_6faces_ms']:.1f} ms"),
        ("classification (crop preprocessing + network), batch 1 / batch 8",
         f"{r['classify_batch1_ms_per_face']:.1f} / {r['classify_batch8_ms_per_face']:.1f} ms/face"),
        ("peak RSS of the process", f"{r['peak_rss_mb']:.0f} MB"),
    ]
    return "\n".join([
        f"Median of {r['repeats']} runs, the torch backend on {r['threads']} threads, {r['model']} model, still-photo "
        f"defaults (20 px smallest face, FaceMesh verification; both backends: above): {source_line(doc)}.",
        "",
        "| what | time |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
    ]) + "\n"


def render_backends() -> str:
    doc = result("backends")
    r = doc["results"]
    rows = [
        ("640x480 video or live frame, 1 face (`predict(photo=False)`)", r["frame_640x480"], "ms"),
        *([("640x480 image, 1 face, still-photo defaults (20 px faces)", r["frame_640x480_photo"], "ms")]
          if "frame_640x480_photo" in r else []),
        ("1200x630 photo, 6 faces, still-photo defaults", r["photo_1200x630"], "ms"),
        ("classifier, batch 1", r["classifier_batch1_per_face"], "ms/face"),
        ("classifier, batch 8", r["classifier_batch8_per_face"], "ms/face"),
    ]
    rss = r["peak_rss"]
    lines = [f"| {name} | {x['torch_ms']:.1f} {unit} | {x['onnx_ms']:.1f} {unit} | {x['ratio']:.2f} |"
             for name, x, unit in rows]
    lines.append(f"| peak RSS of a fresh process | {rss['torch_mb']:.0f} MB | {rss['onnx_mb']:.0f} MB "
                 f"(torch {'imported' if rss['onnx_torch_imported'] else 'never imported'}) | {rss['ratio']:.2f} |")
    return "\n".join([
        f"Both backends interleaved in one run, median of {r['repeats']}, {r['threads']} threads each: "
        f"{source_line(doc)}.",
        "",
        "| what | torch | ONNX Runtime (default) | ONNX / torch |",
        "|---|---|---|---|",
        *lines,
    ]) + "\n"


def render_corpus() -> str:
    doc = result("corpus")
    r = doc["results"] if "results" in doc else doc
    c, local, one, two, proj = r["corpus"], r["local"], r["ray_1_workers"], r["ray_2_workers"], r["projection"]
    return (f"{c['images']} images ({c['faces_pasted']} faces) and {c['clips']} clips ({c['clip']}): local engine "
            f"{local['images']['images_per_s_per_worker_steady'][0]:.1f} images/s and "
            f"{local['video']['frames_per_s_per_worker_steady'][0]:.1f} video frames/s; Ray, steady rate per worker: "
            f"1 worker {one['images']['images_per_s_per_worker_steady'][0]:.1f} images/s, 2 workers "
            + " and ".join(f"{x:.1f}" for x in two["images"]["images_per_s_per_worker_steady"])
            + f" images/s (peak RSS per worker about {max(two['images']['peak_rss_mb_per_worker']):.0f} MB; "
            f"cluster start {one['cluster_start_s']:.0f} s). Projected from the 1-worker rate: "
            f"{proj['images']:,} images on {proj['nodes']} nodes x {proj['cores_per_node']} cores in about "
            f"{proj['wall_time_min']:.1f} min plus start-up, if storage keeps up (assumptions: docs/corpus.md). "
            f"{source_line(doc)}.\n")


def render_app() -> str:
    doc = result("app")
    load_test, live = doc["results"]["load_test"], doc["results"]["live_tab"]
    return (f"{load_test['callers']} concurrent `gradio_client` callers x {load_test['requests_per_caller']} "
            f"`/predict` requests of a 640x480 one-face photo: {load_test['errors']} errors, latency p50 "
            f"{load_test['p50_ms']:.0f} ms / p95 {load_test['p95_ms']:.0f} ms, {load_test['requests_per_s']:.1f} "
            f"requests/s (two inference slots; the rest wait their turn), server RSS "
            f"{load_test['server_rss_mb_before']:.0f} MB before and {load_test['server_rss_mb_after']:.0f} MB after. "
            f"The live tab's work per 640x480 one-face frame (detect, classify, track, draw): "
            f"{live['median_ms']:.1f} ms = {live['frames_per_s']:.1f} frames/s. {source_line(doc)}.\n")


def render_video() -> str:
    doc = result("video")
    r = doc["results"]
    runs = "; ".join(f"{run['name']}: {run['frames_per_s']:.1f}" for run in r["runs"])
    text = (f"`analyze_video` end to end (decode, detect, classify, track), frames analysed per second on "
            f"{r['clip_seconds']:g} s {r['size'][0]}x{r['size'][1]} clips at {r['fps']} frames/s (median of "
            f"{r['repeats']} run(s)): {runs}. {source_line(doc)}.")
    if r.get("backends"):
        text += (f" Runs above on the {r.get('backend', 'default')} backend; both backends on the same clips: "
                 + "; ".join(
            f"{name}: ONNX Runtime {x['onnx_frames_per_s']:.1f}, torch {x['torch_frames_per_s']:.1f} "
            f"({x['ratio_onnx_to_torch']:.1f}x)" for name, x in r["backends"].items()) + ".")
    if r["peak_rss"]:
        text += " Peak RSS of a fresh process, 2-face clip at `sample_fps=5`: " + ", ".join(
            f"{x['minutes']:g} min ({x['frames']:,} frames) {x['peak_rss_mb']:.0f} MB" for x in r["peak_rss"]) + "."
    return text + "\n"


# --- limits, from the code -----------------------------------------------------------------------

#: What each ``FER_*`` variable with a default limits; ``None`` as the default text: read from the code.
LIMITS: dict[str, tuple[str, str | None]] = {
    "FER_MAX_UPLOAD_MB": ("largest file (image or video), MB", None),
    "FER_MAX_REQUEST_MB": ("largest request body (batch, Gradio upload), MB", None),
    "FER_MAX_JSON_KB": ("largest body of every other route, KB (login forms: 16 KB)", None),
    "FER_BODY_IDLE_S": ("longest pause between body bytes (408)", None),
    "FER_BODY_GRACE_S": ("seconds any body may take before the minimum rate applies", None),
    "FER_BODY_MIN_KBPS": ("slowest average body rate after the grace (408)", None),
    "FER_MAX_INFLIGHT_MB": ("upload bytes held by all requests at once (503 past it)", "3 x FER_MAX_REQUEST_MB"),
    "FER_MAX_FILES": ("files per batch request", None),
    "FER_MAX_REQUEST_MEGAPIXELS": ("pixels of all images of a request, read from their headers", None),
    "FER_MAX_VIDEO_SECONDS": ("seconds of video analysed per request", None),
    "FER_MAX_VIDEO_FRAMES": ("frames decoded per video request (then `truncated`)", "FER_MAX_VIDEO_SECONDS x 60"),
    "FER_MAX_FACES": ("faces classified per image or frame (the rest counted in `faces_dropped`)", None),
    "FER_MAX_REQUEST_FACES": ("faces classified per batch request", None),
    "FER_REQUEST_BUDGET_S": ("seconds of inference per batch or video request", None),
    "FER_INFERENCE_SLOTS": ("requests running the model at once, UI and REST together", None),
    "FER_MAX_QUEUE": ("requests waiting for a slot (one more: 503)", None),
    "FER_QUEUE_TIMEOUT_S": ("longest wait for a slot (503)", None),
    "FER_MAX_CONNECTIONS": ("connections at once (uvicorn's `limit_concurrency`; 503 past it)", None),
    "FER_CACHE_MAX_AGE_S": ("age at which cached uploads, outputs and downloads are deleted", None),
    "FER_DOWNLOADS_MAX_MB": ("total size of the app's download folders (oldest deleted first)", None),
}
#: The limits the README's short table shows (``docs/app.md`` shows them all).
MAIN_LIMITS = ("FER_MAX_UPLOAD_MB", "FER_MAX_REQUEST_MB", "FER_MAX_FILES", "FER_MAX_REQUEST_MEGAPIXELS",
               "FER_MAX_VIDEO_SECONDS", "FER_MAX_FACES", "FER_REQUEST_BUDGET_S", "FER_INFERENCE_SLOTS",
               "FER_MAX_QUEUE", "FER_CACHE_MAX_AGE_S")
#: Monitoring's limits, rendered into ``docs/monitoring.md`` the same way.
LOGIN_LIMITS: dict[str, tuple[str, str | None]] = {
    "FER_JWT_MINUTES": ("login token lifetime, minutes", None),
    "FER_LOGIN_PER_CLIENT": ("login attempts per minute from one client address (429 past it)", None),
    "FER_LOGIN_FAILURES": ("failed logins of one account that lock it...", None),
    "FER_LOGIN_WINDOW_S": ("...within this many seconds", None),
    "FER_LOGIN_LOCKOUT_S": ("the first lockout, seconds (doubled per further lockout, at most a day)", None),
}
#: ``FER_*`` variables without a numeric default: described in the README's prose (checked there).
SETTINGS = ("FER_MODEL", "FER_MODEL_REVISION", "FER_DATABASE_URL", "FER_JWT_SECRET", "FER_ADMIN_PASSWORD")
#: Functions that read an environment variable as ``fn("NAME", default)``.
ENV_READERS = {"env_number", "_int_env", "get", "getenv"}


def env_defaults() -> dict[str, str | None]:
    """Every ``FER_*`` variable read in ``fer_app/`` and ``fer_app/monitoring/``, with its literal default
    (``None`` when there is none or it is an expression)."""
    found: dict[str, str | None] = {}
    for path in sorted([*ROOT.glob("fer_app/**/*.py"), *ROOT.glob("fer_app/monitoring/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            name = node.args[0].value
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if not (isinstance(name, str) and name.startswith("FER_") and func in ENV_READERS):
                continue
            default = node.args[1] if len(node.args) > 1 else None
            value = default.value if isinstance(default, ast.Constant) else None
            found[name] = None if value is None else str(value)
    return found


def limits_table(table: dict[str, tuple[str, str | None]]) -> str:
    found = env_defaults()
    unknown = sorted(set(found) - set(LIMITS) - set(LOGIN_LIMITS) - set(SETTINGS))
    gone = sorted((set(LIMITS) | set(LOGIN_LIMITS)) - set(found))
    if unknown or gone:
        raise SourceError(f"FER_* variables out of step with render_readme.LIMITS / LOGIN_LIMITS: new in the code "
                          f"{unknown}, no longer in the code {gone}")
    rows = []
    for name, (what, expression) in table.items():
        default = found[name] if expression is None else expression
        if default is None:
            raise SourceError(f"{name}: no literal default in the code; give its default text in LIMITS")
        rows.append(f"| `{name}` | {default} | {what} |")
    return "\n".join(["| variable | default | what it bounds |", "|---|---|---|", *rows]) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "model": render_model,
    "classes": render_classes,
    "inference": render_inference,
    "backends": render_backends,
    "corpus": render_corpus,
    "app": render_app,
    "video": render_video,
    "limits": lambda: limits_table({name: LIMITS[name] for name in MAIN_LIMITS}),
    "all_limits": lambda: limits_table(LIMITS),
    "login": lambda: limits_table(LOGIN_LIMITS),
}


def render(text: str) -> str:
    """``text`` with every results block rendered anew."""
    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise SourceError(f"unknown results block {name!r}; known: {', '.join(RENDERERS)}")
        return match["open"] + RENDERERS[name]() + match["close"]

    out = BLOCK.sub(replace, text)
    missing = [name for name in SETTINGS if name not in out]
    if "<!-- results:limits -->" in out and missing:
        raise SourceError(f"the README does not mention {', '.join(missing)}")
    return out


def render_files(files: tuple[Path, ...], check: bool) -> int:
    """Render (or with ``check`` compare) each file's blocks; 0 when all are (now) up to date."""
    status = 0
    for path in files:
        text = path.read_text()
        try:
            new = render(text)
        except SourceError as exc:
            print(f"render_readme: {path.relative_to(ROOT)}: {exc}", file=sys.stderr)
            status = 1
            continue
        blocks, name = len(BLOCK.findall(text)), path.relative_to(ROOT)
        if not check:
            if new != text:
                path.write_text(new)
            print(f"render_readme: {name}: {blocks} blocks rendered")
        elif new != text:
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       f"{name}", "rendered"))
            print(f"render_readme: {name} is out of date: run python benchmarks/render_readme.py", file=sys.stderr)
            status = 1
        else:
            print(f"render_readme: {name} is up to date ({blocks} blocks)")
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 if a file is out of date")
    args = p.parse_args(argv)
    return render_files(FILES, args.check)


if __name__ == "__main__":
    sys.exit(main())
