"""torch vs onnxruntime vs the web page: time and peak memory of one protection pass, and what makes the CPU fast.

    python benchmarks/onnx_speed.py [--runs 5] [--rounds 2] [--no-web] [--no-quality]   # make benchmark-onnx

The shipped generator (generator-lama-tiny) at 512x512 and 3840x2160:
- torch and onnxruntime through ``Protector.protect_batch`` (the same code around the network),
  onnxruntime alone (numpy in, no torch imported: what a deployment without PyTorch holds), and the
  dynamically int8-quantised model; every measurement in a fresh process, so its peak resident memory
  (VmHWM) is its own; the baseline column is the process before the first pass;
- onnxruntime's graph optimisation levels, thread counts and thread spinning;
- the web page in headless Chromium (onnxruntime-web, WebAssembly): the time its page reports, with the generator
  it ran (web/models.json: the default up to 6 MP, the fast one above);
- int8 quality: the noise's difference from float32 and each variant's share of the 20-step optimiser's
  gain on the held-out photos of configs/compare/lama-tiny.yaml (5 x 256 px, lama-tiny).
Measurements of one table are interleaved over ``--rounds`` (medians), so a neighbour's load on a shared
machine hits every variant alike; the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from generator.cli_parser import ArgumentParser
from trainer.commands.cli import run_guarded

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = {"512x512": (512, 512), "3840x2160": (2160, 3840)}


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries the parent's peak into
    ru_maxrss across fork and exec, which would charge the benchmark's own torch to every child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on most systems


def inputs(h: int, w: int) -> dict[str, np.ndarray]:
    """A random image, a box mask over a quarter of it and the green target, as numpy arrays."""
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 1, h, w), np.float32)
    mask[..., h // 4: h // 2, w // 4: w // 2] = 1
    return {"image": rng.random((1, 3, h, w), dtype=np.float32), "mask": mask,
            "target": np.array([[0, 1, 0]], np.float32)}


def child(spec: dict) -> dict:
    """One measurement in this (fresh) process: median seconds of ``runs`` warm passes and peak memory."""
    h, w = spec["h"], spec["w"]
    feeds = inputs(h, w)
    if spec["backend"] == "onnx-bare":
        import onnxruntime as ort  # and no torch: the footprint of the network alone

        options = ort.SessionOptions()
        if spec.get("threads"):
            options.intra_op_num_threads = spec["threads"]
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_mem_pattern = spec.get("mem_pattern", False)  # as OnnxGenerator
        session = ort.InferenceSession(spec["model"], options, providers=["CPUExecutionProvider"])
        step = lambda: session.run(["noise"], feeds)  # noqa: E731
    else:
        import torch

        from generator import Protector
        from generator.onnx_backend import OnnxGenerator

        if spec["backend"] == "torch":
            torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
            protector = Protector.from_checkpoint("generator-lama-tiny")
        else:
            net = OnnxGenerator(spec["model"], threads=spec.get("threads"), level=spec.get("level", "all"),
                                spin=spec.get("spin", False))
            protector = Protector(net)
        image, mask = torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["mask"])
        step = lambda: protector.protect_batch(image, mask)  # noqa: E731
    baseline = peak_rss_mib()
    step()  # warm-up: allocation, kernel selection
    times = []
    for _ in range(spec["runs"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "baseline_mib": baseline, "peak_mib": peak_rss_mib()}


def measure(specs: dict[str, dict], rounds: int) -> dict[str, dict]:
    """Each spec in its own process, interleaved over ``rounds``; medians of times, largest peak memory."""
    results: dict[str, list[dict]] = {name: [] for name in specs}
    for _ in range(rounds):
        for name, spec in specs.items():
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                                 text=True, cwd=ROOT, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
            if out.returncode != 0:
                raise RuntimeError(f"{name} failed: {out.stderr[-800:]}")
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {name: {"median_s": statistics.median(r["median_s"] for r in rs),
                   "peak_mib": max(r["peak_mib"] for r in rs), "baseline_mib": min(r["baseline_mib"] for r in rs)}
            for name, rs in results.items()}


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def build_models(folder: Path) -> dict[str, Path]:
    """The shipped generator exported (float32) and dynamically quantised to int8 (Conv weights, uint8)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from generator.onnx_export import export_onnx

    fp32, _ = export_onnx("generator-lama-tiny", folder / "fp32.onnx")
    int8 = folder / "int8.onnx"
    # uint8 weights: onnxruntime's ConvInteger kernels for int8 weights ran 4x slower here. Its advice to
    # pre-process first is silenced: that step's symbolic shape inference fails on the dynamic sizes
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
    return {"fp32": fp32, "int8": int8}


def speed_tables(models: dict[str, Path], runs: int, rounds: int) -> str:
    out = []
    specs = {}
    for size, (h, w) in SIZES.items():
        n = runs if h * w < 4e6 else max(2, runs // 2)  # a 4K pass takes seconds
        base = {"h": h, "w": w, "runs": n}
        specs[f"torch|{size}"] = {**base, "backend": "torch"}
        specs[f"onnxruntime|{size}"] = {**base, "backend": "onnx", "model": str(models["fp32"])}
        specs[f"onnxruntime, no torch|{size}"] = {**base, "backend": "onnx-bare", "model": str(models["fp32"])}
        specs[f"onnxruntime int8|{size}"] = {**base, "backend": "onnx", "model": str(models["int8"])}
    results = measure(specs, rounds)
    rows = [[name.split("|")[0], name.split("|")[1], f"{r['median_s']:.3f}", f"{r['peak_mib']:.0f}",
             f"{r['baseline_mib']:.0f}"] for name, r in results.items()]
    out.append("Backends (default threads: one per core; onnxruntime: all graph optimisations, no spinning, "
               "no memory pattern)\n")
    out.append(table(["backend", "image", "one pass (median s)", "peak RSS (MiB)", "of which before the pass"],
                     rows))

    h, w = SIZES["512x512"]
    specs = {f"level {level}": {"h": h, "w": w, "runs": runs, "backend": "onnx", "model": str(models["fp32"]),
                                "level": level} for level in ("disable", "basic", "extended", "all")}
    results = measure(specs, rounds)
    out.append("\nonnxruntime graph optimisation level, 512x512\n")
    out.append(table(["level", "one pass (median s)"], [[k, f"{r['median_s']:.3f}"] for k, r in results.items()]))

    specs = {}
    for size, (h, w) in SIZES.items():
        n = runs if h * w < 4e6 else max(2, runs // 2)
        for threads in (1, 2):
            specs[f"torch|{threads}|-|{size}"] = {"h": h, "w": w, "runs": n, "backend": "torch", "threads": threads}
            for spin in (False, True):
                specs[f"onnxruntime|{threads}|{'on' if spin else 'off'}|{size}"] = {
                    "h": h, "w": w, "runs": n, "backend": "onnx", "model": str(models["fp32"]), "threads": threads,
                    "spin": spin}
    h, w = SIZES["3840x2160"]
    for pattern in (True, False):
        specs[f"memory pattern {'on' if pattern else 'off'}"] = {
            "h": h, "w": w, "runs": max(2, runs // 2), "backend": "onnx-bare", "model": str(models["fp32"]),
            "mem_pattern": pattern}
    results = measure(specs, rounds)
    memory = {k: results.pop(k) for k in list(results) if k.startswith("memory")}
    out.append("\nonnxruntime's memory pattern (onnxruntime alone), 3840x2160\n")
    out.append(table(["setting", "one pass (median s)", "peak RSS (MiB)", "of which before the pass"],
                     [[k, f"{r['median_s']:.3f}", f"{r['peak_mib']:.0f}", f"{r['baseline_mib']:.0f}"]
                      for k, r in memory.items()]))
    out.append("\nThreads (and onnxruntime's spinning of idle threads)\n")
    out.append(table(["backend", "threads", "spinning", "image", "one pass (median s)"],
                     [[*name.split("|"), f"{r['median_s']:.3f}"] for name, r in results.items()]))
    return "\n".join(out)


def web_times(runs: int) -> str:
    """The page's own timing (network, and everything from pixels to PNG-ready) in headless Chromium."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from generator.web_browser import launch_chromium, open_page, serve_in_background
    from generator.web_server import SITE, check_site

    check_site(SITE)
    server = serve_in_background(SITE)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch_chromium(p)
        for size, (h, w) in SIZES.items():
            feeds = inputs(h, w)
            image, mask = Path(tmp) / f"{size}.png", Path(tmp) / f"{size}_mask.png"
            Image.fromarray((feeds["image"][0].transpose(1, 2, 0) * 255).astype(np.uint8)).save(image)
            Image.fromarray((feeds["mask"][0, 0] * 255).astype(np.uint8)).save(mask)
            page = open_page(browser, server, image, mask)
            provider = page.text_content("#model-info")
            network, total = [], []
            for _ in range(runs if h * w < 4e6 else 1):
                page.click("#protect")
                page.locator("body[data-state=idle]").wait_for(timeout=600_000)
                error = page.text_content("#error")
                if error:
                    raise RuntimeError(f"the page failed at {size}: {error}")
                network.append(float(page.get_attribute("#status", "data-network-ms")) / 1000)
                total.append(float(page.get_attribute("#status", "data-total-ms")) / 1000)
            rows.append([size, page.get_attribute("#status", "data-generator"), f"{statistics.median(network):.3f}",
                         f"{statistics.median(total):.3f}", str(len(network))])
            page.close()
        browser.close()
    server.shutdown()
    backend = provider.split(" on ")[-1].split(".")[0] if provider else "?"
    return (f"\nWeb page in headless Chromium (onnxruntime-web, {backend})\n\n"
            + table(["image", "generator", "network (median s)", "pixels to PNG-ready (median s)", "runs"], rows))


def quality(models: dict[str, Path]) -> str:
    """int8 vs float32: noise difference and share of the optimiser's gain on the compare config's photos."""
    import torch

    from generator import Protector
    from generator.onnx_backend import OnnxGenerator
    from trainer.evaluation.compare_config import load_config
    from trainer.evaluation.comparison import load_samples
    from trainer.evaluation.scoring import generator_method, iterative_method, no_protection, score_methods
    from trainer.evaluation.tables import main_records
    from trainer.inpainting.inpainter import load_inpainter
    from trainer.objective.iterative import IterativeConfig

    samples = load_samples(load_config(ROOT / "configs" / "compare" / "lama-tiny.yaml"))
    images = torch.stack([s.image for s in samples])
    masks = torch.stack([s.mask for s in samples])
    protectors = {"generator (torch)": Protector.from_checkpoint("generator-lama-tiny"),
                  "generator (onnxruntime)": Protector(OnnxGenerator(models["fp32"])),
                  "generator (onnxruntime int8)": Protector(OnnxGenerator(models["int8"]))}
    noises = {name: p.noise(images, masks) for name, p in protectors.items()}
    fp32, int8 = noises["generator (onnxruntime)"], noises["generator (onnxruntime int8)"]
    saved = {name: torch.round((images + n).clamp(0, 1) * 255) for name, n in noises.items()}
    differ = (saved["generator (onnxruntime int8)"] != saved["generator (onnxruntime)"]).float().mean().item()
    torch_vs_onnx = (noises["generator (torch)"] - fp32).abs().max().item()

    inpainter = load_inpainter("lama-tiny")
    reference = "optimiser (20 steps)"
    methods = {"none": no_protection(), reference: iterative_method(inpainter, IterativeConfig(steps=20)),
               **{name: generator_method(p) for name, p in protectors.items()}}
    records = main_records(score_methods(inpainter, images, masks, methods), reference)
    rows = [[r["method"], f"{r['attack_psnr_mean']:.3f}", f"{r['share_of_gain']:.4f}", f"{r['hide_psnr_mean']:.2f}"]
            for r in records if r["method"] != "none"]
    return (f"\nint8 quality ({len(samples)} held-out photos, 256 px, against lama-tiny)\n\n"
            f"- max |noise int8 - noise float32| = {(int8 - fp32).abs().max().item():.5f} "
            f"(eps 0.025); 8-bit pixels that differ: {differ:.1%}\n"
            f"- max |noise onnxruntime - noise torch| = {torch_vs_onnx:.1e}\n\n"
            + table(["method", "attack PSNR (dB)", "share of the optimiser's gain", "hide PSNR (dB)"], rows))


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed passes per process (4K: half), after a warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every process")
    parser.add_argument("--no-web", action="store_true", help="skip the headless Chromium measurement")
    parser.add_argument("--no-quality", action="store_true", help="skip the int8 quality measurement (about 2 min)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    import onnxruntime
    import torch

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        print(f"int8 model: {models['int8'].stat().st_size / 1e6:.2f} MB (float32 "
              f"{models['fp32'].stat().st_size / 1e6:.2f} MB)\n", flush=True)
        print(speed_tables(models, args.runs, args.rounds), flush=True)
        if not args.no_web:
            print(web_times(args.runs), flush=True)
        if not args.no_quality:
            print(quality(models), flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
