"""Benchmark (issue 15): searched int8 ViTs on Fashion-MNIST under real board budgets,
against random feasible subnets given the same final training and a small CNN.

Stages (each resumes; finished ones are skipped when the benchmark runs again):
  cnn_full, cnn_small     the CNN reference (`mcuformer train-teacher --arch cnn2`), on all
                          training images and on the first --small-images of them;
                          cnn_small is also the small-data teacher
  teacher_cnn4            the budgets' distillation teacher (--teacher cnn4, the default;
                          with --teacher cnn2 it is cnn_full)
  small_data              the whole pipeline (train-supernet, search, finetune distilling
                          from cnn_small's teacher, convert) on those --small-images, at the
                          step floor; small_data_no_teacher: the same without distillation
                          (supernet and search in small_data/<space>_<n>img_<floor>steps_<...>)
  <budget>/winner         train-supernet once per space and supernet training (folder
                          supernet_<space>_<epochs>ep_<sampling>, its search beside it as
                          <budget>/search_<epochs>ep_<sampling>), search under the budget,
                          finetune the winner, convert: float and int8 test top-1
  <budget>/random_<i>     --randoms random subnets that fit the same budget, given the
                          same final training (finetune from the supernet) and conversion;
                          with --distill (default) the final trainings distil from the
                          teacher and the stages are named <which>_kd_cnn4 (<which>_kd: cnn2)
  evolve/space            evolve-space (S3) from that supernet under --evolve-budget:
                          E-T error per dimension and round
  evolve/winner           the evolved space given the starting space's supernet training,
                          search and final training: did the evolved space win? (folders
                          evolve/<budget>_<supernet training>_<rounds>rx<samples>/)
Every number is the full 10,000-image test set, int8 through the numpy reference;
--verify-tflm runs each converted model in TFLM on the host over the same images too.
Search, the kept fine-tuning epoch and the conversions' activation ranges (--range auto,
the default) use the validation split only.

    .venv/bin/python benchmarks/accuracy_fmnist.py [--only cnn_small,small_data] [--budgets f746_15m]
    .venv/bin/python benchmarks/accuracy_fmnist.py --reconvert    # after an op contract change
    .venv/bin/python benchmarks/accuracy_fmnist.py --score-proxy  # the search's finalist proxy per subnet
    .venv/bin/python benchmarks/accuracy_fmnist.py --verify-tflm  # each model in TFLM (host), byte for byte
    .venv/bin/python benchmarks/accuracy_fmnist.py --budgets f746_15m --only f746_15m/winner --tag _w09 \
        --teacher-weight 0.9 --winner-from _kd_cnn4_50ep   # another final training of a recorded winner
    ... --winner-from _kd_cnn4_12ep --tag _50ep --finetune-seed 1  # the same training, another seed

Every run starts from the stages of the --results document, so a new machine adds rows to it. The
--work folder keeps one state file per results document: a trial's rows never reach another one.

Writes benchmarks/results/accuracy_fmnist.json (or --results, for a trial) after every stage, and
accuracy_fmnist.png (accuracy against flash and against MACs).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import atomic  # noqa: E402  (sets TF_USE_LEGACY_KERAS first)
from common.errors import UserError  # noqa: E402
from converter import range_choice  # noqa: E402

SPACES = ROOT / "configs" / "spaces"
TEACHER_EPOCHS = 20
SUPERNET_LR = 2e-3
RESULTS = ROOT / "benchmarks" / "results"
# name: (space, mcuformer search budget flags, what it stands for)
BUDGETS = {
    "f746_15m": ("fmnist_f746", ["--board", "stm32f746", "--max-macs", "15000000"],
                 "STM32F746 (320 KiB SRAM, 1 MiB flash incl. code), <= 15 M MACs"),
    "f746_nocap": ("fmnist_f746", ["--board", "stm32f746"], "STM32F746 (320 KiB SRAM, 1 MiB flash), no MAC cap"),
    "mcu_64k": ("fmnist_f746", ["--board", "stm32l432kc"], "64 KiB SRAM / 256 KiB flash (STM32L432KC)"),
    "f746_15m_wide": ("fmnist_f746_wide", ["--board", "stm32f746", "--max-macs", "15000000"],
                      "STM32F746, <= 15 M MACs, patch size, tokenizer window, width and depth searched wide"),
    "f746_15m_stem": ("fmnist_f746_stem", ["--board", "stm32f746", "--max-macs", "15000000"],
                      "STM32F746, <= 15 M MACs, behind a fixed 3x3 convolutional stem (CCT's tokenizer)"),
    "f746_15m_tokenizers": ("fmnist_f746_tokenizers", ["--board", "stm32f746", "--max-macs", "15000000"],
                            "STM32F746, <= 15 M MACs, the tokenizer searched too: conv stem, 7x7 window or 7x7 patches"),
}


def log_path(work: Path, stage: str) -> Path:
    return work / "logs" / (stage.replace("/", "_") + ".log")


def mcuformer(argv: list, work: Path, stage: str) -> None:
    """One pipeline command in its own process (its own TensorFlow graphs), output to the stage log."""
    log = log_path(work, stage)
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{stage}] mcuformer {' '.join(argv)}  (log: {log})", flush=True)
    with open(log, "a") as out:
        proc = subprocess.run([sys.executable, "-m", "mcuformer", *argv], stdout=out, stderr=subprocess.STDOUT,
                              cwd=ROOT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"stage {stage}: `mcuformer {argv[0]}` failed: {tail[0]} (see {log})")


def model_record(model_dir: Path) -> dict:
    from keras_supernet.arch import ArchConfig

    report = json.loads((model_dir / "report.json").read_text())
    arch = ArchConfig.from_dict(report["arch"])
    return {"arch": arch.describe(), "config": report["arch"], "params": arch.params(), "macs": arch.macs(),
            "float_top1": report["float_accuracy"], "int8_top1": report["int8_accuracy"],
            "test_images": report.get("accuracy", {}).get("test_images"),
            "flash_model_bytes": report["flash_bytes"], "required_arena_bytes": report.get("required_arena_bytes"),
            "int8_ranges": range_choice.describe(report.get("quantization", {}))}


def validation_of(log: Path) -> dict:
    """The inherited and fine-tuned validation accuracy that `mcuformer finetune` printed last."""
    found = re.findall(r"val acc inherited ([0-9.]+) -> fine-tuned ([0-9.]+)", log.read_text(errors="replace"))
    if not found:
        return {}
    inherited, tuned = found[-1]
    return {"val_inherited": float(inherited), "val_finetuned": float(tuned)}


def state_name(results: Path) -> str:
    """The work folder's state file of one results document: a trial's --results never feeds
    the published document's rows, nor the other way round."""
    digest = hashlib.sha1(str(results.resolve()).encode()).hexdigest()[:8]
    return f"state_{results.stem}_{digest}.json"


class Bench:
    def __init__(self, args):
        self.args, self.work = args, Path(args.work)
        self.state_file = self.work / state_name(Path(args.results))
        self.state = self.published()
        self._read_own_rows()
        self.work.mkdir(parents=True, exist_ok=True)
        self.data_flags = ["--data", "fashion_mnist"]

    def published(self) -> dict:
        """Every run starts from the results document's stages, so that a new stage adds a row to it
        instead of rewriting it with only the stages this work folder ran."""
        results = Path(self.args.results)
        if not results.exists():
            return {"results": {}}
        try:
            return {"results": dict(json.loads(results.read_text())["results"])}
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{results} is not a results document of this benchmark: move it aside, "
                            "or write to another one with --results") from None

    def _read_own_rows(self) -> None:
        """The stages this work folder ran for this results document, over the document's rows."""
        if self.state_file.exists():
            self.state["results"].update(json.loads(self.state_file.read_text())["results"])

    def selected(self, stage: str) -> bool:
        return not self.args.only or any(stage.startswith(o) for o in self.args.only)

    def done(self, stage: str) -> bool:
        return stage in self.state["results"]

    def record(self, stage: str, result: dict, started: float) -> None:
        result["wall_seconds"] = round(time.time() - started, 1)
        result["command"] = "benchmarks/accuracy_fmnist.py " + " ".join(sys.argv[1:])
        self._merge(stage, result)

    def _merge(self, stage: str, result: dict) -> None:
        """Merge into the state file under a lock: two benchmark processes may run different stages."""
        import fcntl

        with open(self.work / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._read_own_rows()
            self.state["results"][stage] = result
            atomic.write_json(self.state_file, self.state)
            write_results(self.state, Path(self.args.results))
        print(f"[{stage}] {json.dumps({k: v for k, v in result.items() if k not in ('config', 'command')})}",
              flush=True)

    # --- the pipeline, one command per step ---------------------------------------------------
    def supernet(self, name: str, space: str, extra: list, val_images: int) -> Path:
        folder = self.work / name
        if (folder / "done").exists():
            return folder
        resume = ["--resume"] if (folder / "run.json").exists() else []
        space_file = space if space.endswith(".json") else str(SPACES / f"{space}.yaml")
        mcuformer(["train-supernet", "--space", space_file, "--out", str(folder),
                   *self.data_flags, "--epochs", str(self.args.supernet_epochs), "--sampling", self.args.supernet_sampling,
                   "--lr", str(self.args.supernet_lr),
                   "--val-limit", str(val_images), *extra, *resume], self.work, name)
        (folder / "done").write_text("")
        return folder

    def search(self, name: str, supernet: Path, budget: list, val_images: int) -> Path:
        """The evolutionary search; with --finalists K its K best are re-ranked by the fine-tune
        proxy, in a folder of its own (name_fin<K>x<steps>) beside the plain search."""
        a = self.args
        finalists = ["--finalists", str(a.finalists), "--finalist-steps", str(a.finalist_steps)] if a.finalists else []
        if a.finalists:
            name = f"{name}_fin{a.finalists}x{a.finalist_steps}"
        folder = self.work / name
        if not (folder / "best_subnet.json").exists():
            mcuformer(["search", "--supernet", str(supernet), "--out", str(folder), *self.data_flags, *budget,
                       "--val-limit", str(val_images), "--population", str(a.population),
                       "--generations", str(a.generations), "--parents", str(max(2, a.population // 4)),
                       "--mutations", str(a.population // 2), "--crossovers", str(a.population // 2), *finalists],
                      self.work, name)
        return folder / "best_subnet.json"

    def final_model(self, name: str, supernet: Path, arch: Path, extra: list, val_images: int) -> dict:
        """Finetune (the final training, the same for winner and random subnets) and convert."""
        a, folder = self.args, self.work / name
        subnet, model = folder / "subnet.keras", folder / "model"
        if not subnet.exists():
            mcuformer(["finetune", "--supernet", str(supernet), "--arch", str(arch), "--out", str(subnet),
                       *self.data_flags, "--epochs", str(a.finetune_epochs), "--val-limit", str(val_images),
                       *extra], self.work, name)
        trained = validation_of(log_path(self.work, name))
        if not (model / "report.json").exists():
            self.convert(subnet, model, name)
        return {**model_record(model), **trained}

    def convert(self, subnet: Path, model: Path, stage: str) -> None:
        mcuformer(["convert", str(subnet), "--out", str(model), *self.data_flags, "--calib", "500",
                   "--range", self.args.range, "--eval", "10000", "--force", "--no-baseline"], self.work, stage)

    def finished_models(self):
        """(stage, result, model folder) of every finished stage with a converted model."""
        for stage, result in list(self.state["results"].items()):
            model = next((m for m in (self.work / stage / "model", self.work / stage / "final" / "model")
                          if (m / "report.json").exists()), None)
            if "flash_model_bytes" in result and model is not None and self.selected(stage):
                yield stage, result, model

    def reconvert(self) -> None:
        """Convert every finished stage's trained subnet again with today's converter (after an op
        contract change): the model fields are re-measured, the training fields and command kept."""
        for stage, result, model in self.finished_models():
            self.convert(model.parent / "subnet.keras", model, stage)
            kept = {k: v for k, v in result.items() if k != "tflm_host"}     # measured on the old model
            self._merge(stage, {**kept, **model_record(model), "reconverted": time.strftime("%Y-%m-%d")})

    def verify_tflm(self) -> None:
        """Each finished model in TFLM on the host over the same test images as its int8 number:
        TFLM's accuracy and the output bytes that differ from the numpy reference (0 when exact)."""
        from deploy import tflm
        from deploy.verify import verify

        if tflm.find_tflm() is None:
            raise UserError(f"--verify-tflm needs TFLM: {tflm.missing_reason()}")
        for stage, result, model in self.finished_models():
            images = result.get("test_images") or 10000
            if result.get("tflm_host", {}).get("images") == images:
                continue
            print(f"[{stage}] TFLM host on {images} test images", flush=True)
            host = verify(model, images=images)["host"]
            self._merge(stage, {**result, "tflm_host": {"images": images, "int8_top1": host["int8_accuracy"],
                                                        "mismatched_outputs": host["mismatched_outputs"]}})

    def score_proxy(self) -> None:
        """The search's finalist proxy (search/proxy.py) for each finished winner / random subnet, to
        study how well it ranks them against their final training (summary: kendall_tau_proxy_*)."""
        from common import datasets
        from keras_supernet.arch import ArchConfig
        from search.fitness import config_key
        from search.proxy import FinetuneProxy

        steps, proxies, scores = self.args.proxy_steps, {}, {}
        for stage, result in list(self.state["results"].items()):
            budget = stage.split("/")[0]
            if budget not in BUDGETS or "config" not in result or not self.selected(stage):
                continue
            if result.get("proxy_steps") == steps:
                continue
            # the supernet the stage was fine-tuned from (older records: the one these flags name)
            supernet = result.get("supernet", self.supernet_name(BUDGETS[budget][0]))
            if supernet not in proxies:
                proxies[supernet] = FinetuneProxy(self.work / supernet, datasets.load("fashion_mnist"), steps,
                                                  val_limit=self.args.val_images, progress=True)
            config = ArchConfig.from_dict(result["config"])
            key = (supernet, config_key(config))
            if key not in scores:        # a subnet met again (a winner's other final trainings) is scored once
                started = time.time()
                score = proxies[supernet].score(config)
                scores[key] = {"val_proxy": score, "proxy_steps": steps, "proxy_seconds": round(time.time() - started, 1)}
            self._merge(stage, {**result, **scores[key]})

    # --- stages ---------------------------------------------------------------------------------
    def cnn(self, stage: str, train_images: int, val_images: int, arch: str = "cnn2") -> None:
        """A CNN trained by `mcuformer train-teacher`: cnn2 is the CNN reference (and the small-data
        teacher), cnn4 the stronger distillation teacher."""
        started, teacher = time.time(), self.teacher(stage, train_images, val_images, arch)
        from common import datasets
        from converter.keras_load import load_model
        from keras_supernet.finetune import evaluate_model
        from keras_supernet.teacher import TEACHER_ARCHS, model_macs

        data = datasets.load("fashion_mnist")
        model = load_model(teacher)
        self.record(stage, {"model": f"{TEACHER_ARCHS[arch]} (keras_supernet/teacher.py {arch})", "params": model.count_params(),
                            "macs": model_macs(model), "train_images": train_images or "all",
                            "val_images": val_images, "test_top1": evaluate_model(model, data.x_test, data.y_test)},
                    started)

    def teacher(self, stage: str, train_images: int, val_images: int, arch: str = "cnn2") -> Path:
        out = self.work / stage / "teacher.keras"
        if not out.exists():
            floor = ["--min-steps", str(self.args.min_steps)] if train_images else ["--min-steps", "0"]
            epochs = self.args.cnn_epochs if arch == "cnn2" else self.args.teacher_epochs
            mcuformer(["train-teacher", "--arch", arch, "--out", str(out), *self.data_flags, "--epochs", str(epochs),
                       "--train-limit", str(train_images), "--val-limit", str(val_images), *floor], self.work, stage)
        return out

    def small_data(self, stage: str, with_teacher: bool) -> None:
        started = time.time()
        a = self.args
        limit = ["--train-limit", str(a.small_images), "--min-steps", str(a.min_steps)]
        val = a.small_val_images
        folder = self.small_data_folder()
        supernet = self.supernet(f"{folder}/supernet", a.small_space, limit, val)
        best = self.search(f"{folder}/search", supernet, ["--board", "stm32f746", "--max-macs", "15000000"], val)
        teacher = (["--teacher", str(self.teacher("cnn_small", a.small_images, val)),
                    "--teacher-weight", str(a.small_teacher_weight)] if with_teacher else [])
        result = self.final_model(f"{stage}/final", supernet, best, limit + teacher, val)
        result.update(train_images=a.small_images, val_images=val, teacher=bool(teacher), supernet=folder)
        self.record(stage, result, started)

    def small_data_folder(self) -> str:
        """small_data/<space>_<images>img_<floor>steps<supernet suffix>: the small-data supernet and its
        search are named by what they trained on and how, as a budget's are (supernet_suffix)."""
        a = self.args
        return f"small_data/{a.small_space}_{a.small_images}img_{a.min_steps}steps{self.supernet_suffix()}"

    def budget_stage(self, budget: str, which: str) -> None:
        """`which`: winner or random_<seed>; with --distill the final training of every model of the
        budget distils from the --teacher CNN, and the stage is `<which><kd_suffix>`."""
        space, flags, _ = BUDGETS[budget]
        stage, started = f"{budget}/{which}{self.kd_suffix()}", time.time()
        val = self.args.val_images
        source = self.winner_stage(budget) if which == "winner" and self.args.winner_from else None
        arch = self.recorded_winner(source) if source else None      # checked before any training
        supernet = self.supernet(self.supernet_name(space), space, ["--min-steps", "0"], val)
        if which == "winner" and not source:
            arch = self.search(f"{budget}/search{self.supernet_suffix()}", supernet, flags, val)
        elif which != "winner":
            arch = self.work / budget / which / "arch.json"
            if not arch.exists():
                atomic.write_json(arch, random_feasible(space, flags, seed=int(which.split("_")[1])).to_dict())
        result = self.final_model(stage, supernet, arch, self.budget_finetune_flags(), val)
        result["teacher"] = self.args.distill and self.args.teacher
        result["supernet"] = supernet.name
        if source:
            result["winner_from"] = source
        self.record(stage, result, started)

    def supernet_name(self, space: str) -> str:
        return f"supernet_{space}{self.supernet_suffix()}"

    def supernet_suffix(self) -> str:
        """_<epochs>ep_<sampling>[_lr<lr>]: a budget space's supernet, and the search on it, are named
        by how the supernet was trained, so that a run asking for another training gets its own
        instead of reusing a finished one."""
        a = self.args
        lr = "" if a.supernet_lr == SUPERNET_LR else f"_lr{a.supernet_lr:g}"
        return f"_{a.supernet_epochs}ep_{a.supernet_sampling}{lr}"

    def winner_stage(self, budget: str) -> str:
        return f"{budget}/winner{self.args.winner_from}"

    def recorded_winner(self, source: str) -> Path:
        """The subnet an earlier search picked (the `config` of the winner stage with suffix
        --winner-from), so that a new final training is compared on the same subnet: a search on
        another machine may pick another, as the supernet training is not bit-reproducible."""
        from keras_supernet.arch import ArchConfig

        if "config" not in self.state["results"].get(source, {}):
            raise UserError(f"--winner-from: no finished stage {source} with a subnet config in {self.args.results}")
        arch = self.work / source / "arch.json"
        atomic.write_json(arch, ArchConfig.from_dict(self.state["results"][source]["config"]).to_dict())
        return arch

    def budget_finetune_flags(self) -> list:
        """finetune flags of the budgets' final trainings: the teacher (cnn2 is cnn_full's, cnn4 its
        own stage), then --ema and --erase where given (left unset, finetune's defaults hold)."""
        a = self.args
        recipe = [*(["--ema", str(a.ema)] if a.ema is not None else []),
                  *(["--erase", str(a.erase)] if a.erase is not None else []),
                  *(["--seed", str(a.finetune_seed)] if a.finetune_seed else [])]
        if not a.distill:
            return recipe
        weight = [] if a.teacher_weight is None else ["--teacher-weight", str(a.teacher_weight)]
        if a.teacher == "cnn2":
            return ["--teacher", str(self.teacher("cnn_full", 0, a.val_images)), *weight, *recipe]
        return ["--teacher", str(self.teacher(self.teacher_stage(), 0, a.val_images, a.teacher)), *weight, *recipe]

    def teacher_stage(self) -> str:
        """teacher_cnn4, or teacher_cnn4_<n>ep when trained for other than the default epochs."""
        a = self.args
        return f"teacher_{a.teacher}" + ("" if a.teacher_epochs == TEACHER_EPOCHS else f"_{a.teacher_epochs}ep")

    def kd_suffix(self) -> str:
        """Stage name suffix of a final training: _kd (cnn2 teacher), _kd_cnn4, then --tag, then
        _seed<N> for another --finetune-seed than finetune's 0."""
        seed = f"_seed{self.args.finetune_seed}" if self.args.finetune_seed else ""
        return teacher_suffix(self.args.distill and self.args.teacher) + self.args.tag + seed

    def evolve_space(self, stage: str) -> None:
        """S3 on the budget's space: E-T error per dimension and round, and the evolved space."""
        space, flags, _ = BUDGETS[self.args.evolve_budget]
        started, a = time.time(), self.args
        supernet = self.supernet(self.supernet_name(space), space, ["--min-steps", "0"], a.val_images)
        out = self.work / self.evolve_folder() / "space"
        if not (out / "done").exists():
            mcuformer(["evolve-space", "--supernet", str(supernet), "--out", str(out), *self.data_flags, *flags,
                       "--rounds", str(a.evolve_rounds), "--samples", str(a.evolve_samples),
                       "--retrain-epochs", "1", "--val-limit", str(a.val_images)], self.work, stage)
            (out / "done").write_text("")
        record = json.loads((out / "evolve_space.json").read_text())
        rounds = [{"round": r["round"],
                   "et_error": {d: [round(x["ET"], 4) for x in v["scores"]] for d, v in r["dimensions"].items()},
                   "choices": {d: v["choices"] for d, v in r["dimensions"].items()},
                   "action": {d: v["action"] for d, v in r["dimensions"].items()}} for r in record["rounds"]]
        self.record(stage, {"budget": a.evolve_budget, "start_space": record["settings"]["start_space"],
                            "final_space": record["final_space"], "rounds": rounds}, started)

    def evolve_folder(self) -> str:
        """evolve/<budget><supernet suffix>_<rounds>rx<samples>: the evolved space, its supernet and its
        search, named by the starting supernet and the evolve-space settings."""
        a = self.args
        return f"evolve/{a.evolve_budget}{self.supernet_suffix()}_{a.evolve_rounds}rx{a.evolve_samples}"

    def evolved_winner(self, stage: str) -> None:
        """The evolved space gets the starting space's supernet training, search and final training."""
        _, flags, _ = BUDGETS[self.args.evolve_budget]
        started, val = time.time(), self.args.val_images
        folder = self.evolve_folder()
        space_file = self.work / folder / "space" / "space_final.json"
        supernet = self.supernet(f"{folder}/supernet", str(space_file), ["--min-steps", "0"], val)
        arch = self.search(f"{folder}/search", supernet, flags, val)
        result = self.final_model(stage, supernet, arch, self.budget_finetune_flags(), val)
        result["teacher"] = self.args.distill and self.args.teacher
        start = self.state["results"].get(f"{self.args.evolve_budget}/winner{self.kd_suffix()}")
        if start:
            result["minus_start_space_winner_int8"] = result["int8_top1"] - start["int8_top1"]
        self.record(stage, result, started)

    def stages(self):
        a = self.args
        kd = self.kd_suffix()
        yield "cnn_small", lambda: self.cnn("cnn_small", a.small_images, a.small_val_images)
        yield "cnn_full", lambda: self.cnn("cnn_full", 0, a.val_images)
        if a.distill and a.teacher != "cnn2":
            yield self.teacher_stage(), lambda: self.cnn(self.teacher_stage(), 0, a.val_images, a.teacher)
        yield "small_data", lambda: self.small_data("small_data", with_teacher=True)
        yield "small_data_no_teacher", lambda: self.small_data("small_data_no_teacher", with_teacher=False)
        for budget in a.budgets:
            yield f"{budget}/winner{kd}", lambda b=budget: self.budget_stage(b, "winner")
            for i in range(a.randoms):
                yield f"{budget}/random_{i}{kd}", lambda b=budget, i=i: self.budget_stage(b, f"random_{i}")
        yield "evolve/space", lambda: self.evolve_space("evolve/space")
        yield "evolve/winner", lambda: self.evolved_winner("evolve/winner")

    def run(self) -> None:
        for stage, run in self.stages():
            if not self.selected(stage):
                continue
            if self.done(stage):
                print(f"[{stage}] done earlier, skipped")
                continue
            run()


def random_feasible(space_name: str, flags: list, seed: int):
    """A subnet drawn uniformly from the space, redrawn until it fits the budget."""
    from keras_supernet.space import SearchSpace
    from memory_model.memory import evaluate
    from search.budget import Budget

    space = SearchSpace.load(SPACES / f"{space_name}.yaml")
    opts = dict(zip(flags[0::2], flags[1::2]))
    budget = Budget.from_args(board=opts.get("--board"), max_macs=opts.get("--max-macs"))
    rng = np.random.default_rng(1000 + seed)
    for _ in range(100000):
        config = space.sample(rng)
        if budget.admits(evaluate(config)):
            return config
    raise UserError(f"no random subnet of {space_name} fits {budget.describe()}")


def kendall_tau(a: list, b: list) -> float:
    """Kendall's tau-a: how well ranking by `a` (inherited accuracy) predicts the order of `b`."""
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    score = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs)
    return float(score / len(pairs))


def teacher_suffix(teacher) -> str:
    """A final training's stage suffix from its record's `teacher` (True: cnn2, from before cnn4)."""
    return "" if not teacher else "_kd" if teacher in (True, "cnn2") else f"_kd_{teacher}"


def summarize(results: dict) -> dict:
    """Per budget and final training (with / without the teacher, --tag): winner against the random mean."""
    out = {}
    for key, winner in results.items():
        match = re.fullmatch(rf"({'|'.join(BUDGETS)})/winner(.*)", key)
        if not match:
            continue
        budget, kd = match.groups()
        randoms = [r for k, r in results.items() if re.fullmatch(rf"{budget}/random_\d+{re.escape(kd)}", k)]
        entry = {"winner_int8": winner["int8_top1"], "int8_minus_float": winner["int8_top1"] - winner["float_top1"]}
        if randoms:
            mean = float(np.mean([r["int8_top1"] for r in randoms]))
            entry.update(random_int8_mean=mean, random_count=len(randoms), winner_minus_random_mean=winner["int8_top1"] - mean)
        for proxy in ("val_inherited", "val_proxy"):
            ranked = [r for r in [winner, *randoms] if proxy in r and "val_finetuned" in r]
            if len(ranked) >= 3:
                entry[f"kendall_tau_{proxy[4:]}_vs_final_val"] = kendall_tau([r[proxy] for r in ranked],
                                                                            [r["val_finetuned"] for r in ranked])
        out[budget + kd] = entry
    evolved, space = results.get("evolve/winner"), results.get("evolve/space")
    start = space and evolved and results.get(f"{space['budget']}/winner{teacher_suffix(evolved.get('teacher'))}")
    if evolved and start:
        out["evolve"] = {"start_space_winner_int8": start["int8_top1"], "evolved_space_winner_int8": evolved["int8_top1"],
                         "evolved_minus_start": evolved["int8_top1"] - start["int8_top1"],
                         "evolved_space_won": evolved["int8_top1"] > start["int8_top1"]}
    if "small_data" in results and "cnn_small" in results:
        out["small_data"] = {"pipeline_int8": results["small_data"]["int8_top1"],
                             "cnn": results["cnn_small"]["test_top1"],
                             "pipeline_minus_cnn": results["small_data"]["int8_top1"] - results["cnn_small"]["test_top1"]}
    return out


def write_results(state: dict, out: Path) -> None:
    """The results document `out` (.json) and its plot (.png beside it)."""
    results = state["results"]
    doc = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
           "note": "each result names the command (and so the settings) that produced it",
           "budgets": {k: {"space": v[0], "flags": v[1], "label": v[2]} for k, v in BUDGETS.items()},
           "results": results, "summary": summarize(results),
           "wall_seconds_total": round(sum(r.get("wall_seconds", 0) for r in results.values()), 1)}
    atomic.write_json(out, doc)
    plot(results, out.with_suffix(".png"))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    marks = {"winner": ("o", "searched winner", "C0"), "random": ("x", "random feasible", "C1"),
             "small": ("s", "2,000 images (with / without teacher)", "C2")}
    for key, r in results.items():
        if "int8_top1" not in r:
            continue
        kind = "small" if key.startswith("small_data") else ("winner" if "/winner" in key else "random")
        for ax, x in zip(axes, (r["flash_model_bytes"] / 1024, r["macs"] / 1e6)):
            ax.scatter(x, 100 * r["int8_top1"], marker=marks[kind][0], color=marks[kind][2], label=marks[kind][1],
                       s=40)
            ax.annotate(key, (x, 100 * r["int8_top1"]), fontsize=7)
    for key in ("cnn_full", "cnn_small"):       # float CNNs: a line across both, a point at their MACs
        if key in results:
            acc = 100 * results[key]["test_top1"]
            axes[1].scatter(results[key]["macs"] / 1e6, acc, marker="^", color="grey", s=40,
                            label="CNN reference (float)")
            for ax in axes:
                ax.axhline(acc, ls="--", lw=1, color="grey")
                ax.text(ax.get_xlim()[0], acc, f" CNN {key[4:]} (float)", fontsize=7, va="bottom")
    for ax, label in zip(axes, ("model flash (KiB)", "MACs per image (M)")):
        ax.set_xlabel(label)
        ax.set_ylabel("int8 test top-1 (%)")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Fashion-MNIST, 10,000 test images, int8 (numpy reference)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=str(ROOT / "out" / "bench_accuracy_fmnist"))
    p.add_argument("--results", default=str(RESULTS / "accuracy_fmnist.json"),
                   help="results document (.json; the plot goes beside it as .png): another one for a trial")
    p.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=[],
                   help="comma-separated stage prefixes to run (default: all)")
    p.add_argument("--budgets", type=lambda s: s.split(","), default=list(BUDGETS))
    p.add_argument("--randoms", type=int, default=3)
    p.add_argument("--tag", default="", help="suffix of the budget stages' names (e.g. _5ep): a second final "
                   "training of the same budget, compared winner against randoms within the same tag")
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True,
                   help="the budgets' final training distils from a CNN teacher (--teacher)")
    p.add_argument("--teacher", choices=("cnn2", "cnn4"), default="cnn4",
                   help="the budgets' teacher: cnn4 (stage teacher_cnn4; final stages <which>_kd_cnn4) or cnn2 "
                        "(the CNN reference cnn_full; stages <which>_kd)")
    p.add_argument("--teacher-epochs", type=int, default=TEACHER_EPOCHS,
                   help="training epochs of the cnn4 teacher (other than the default: stage teacher_cnn4_<n>ep)")
    p.add_argument("--winner-from", metavar="SUFFIX", default="",
                   help="give the winner stages the subnet of the finished stage <budget>/winner<SUFFIX> "
                        "(e.g. _kd_cnn4_50ep) instead of searching again")
    p.add_argument("--teacher-weight", type=float, default=None,
                   help="distillation weight of the budgets' final trainings (default: finetune's)")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="the budgets' final trainings keep an EMA of the weights (default: finetune's, off)")
    p.add_argument("--erase", type=float, default=None, metavar="P",
                   help="random-erasing probability of the budgets' final trainings (default: finetune's, off)")
    p.add_argument("--supernet-epochs", type=int, default=6)
    p.add_argument("--supernet-sampling", choices=("sandwich", "uniform"), default="sandwich")
    # 8e-3 (train-supernet's default, tuned on 16-token spaces) left the 49-token, 6-block
    # space at 55% after 2 epochs; the demo's full setting uses 2e-3 as well
    p.add_argument("--supernet-lr", type=float, default=SUPERNET_LR)
    p.add_argument("--population", type=int, default=24)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--finalists", type=int, default=0, metavar="K",
                   help="the search re-ranks its K best subnets by a short fine-tune (search --finalists)")
    p.add_argument("--finalist-steps", type=int, default=400, help="fine-tuning steps of each finalist")
    p.add_argument("--finetune-epochs", type=int, default=30)
    p.add_argument("--finetune-seed", type=int, default=0,
                   help="seed of the budgets' final trainings (another than 0 adds _seed<N> to the stage names): "
                        "the same subnet and recipe trained again, to measure how much one training's luck moves it")
    p.add_argument("--val-images", type=int, default=2000)
    p.add_argument("--small-images", type=int, default=2000)
    p.add_argument("--small-val-images", type=int, default=500,
                   help="validation images of the small-data runs (a small labelled set has few)")
    p.add_argument("--small-space", default="fmnist_demo")
    # 6,000 steps gave 2.0 points of validation accuracy over 2,000 on 2,000 images
    # (keras_supernet/README.md, small-data controlled runs)
    p.add_argument("--min-steps", type=int, default=6000, help="step floor of the small-data trainings")
    # w 0.9 beat 0.5 by 0.4-0.5 points of validation accuracy at both the 2,000- and the 6,000-step
    # floor (keras_supernet/README.md, small-data controlled runs)
    p.add_argument("--small-teacher-weight", type=float, default=0.9,
                   help="distillation weight of the small-data final training")
    p.add_argument("--cnn-epochs", type=int, default=30)
    p.add_argument("--range", choices=("auto", "percentile"), default="auto",
                   help="activation ranges of each conversion (mcuformer convert --range); auto: the method whose "
                        "int8 model is best on the validation split")
    p.add_argument("--reconvert", action="store_true",
                   help="only convert the finished stages' trained subnets again (after a contract change)")
    p.add_argument("--verify-tflm", action="store_true",
                   help="only run the finished stages' models in TFLM on the host (needs `make tflm`)")
    p.add_argument("--score-proxy", action="store_true",
                   help="only score the finished budget stages' subnets with the search's finalist proxy")
    p.add_argument("--proxy-steps", type=int, default=400, help="fine-tuning steps of that proxy")
    p.add_argument("--evolve-budget", default="mcu_64k", help="the budget of the evolve-space stages")
    p.add_argument("--evolve-rounds", type=int, default=2)
    p.add_argument("--evolve-samples", type=int, default=8)
    args = p.parse_args(argv)
    unknown = [b for b in args.budgets if b not in BUDGETS]
    if unknown:
        p.error(f"unknown budget {unknown[0]!r}; choose from {', '.join(BUDGETS)}")
    if args.finalists < 0 or args.finalist_steps < 1:
        p.error("--finalists must be 0 or more and --finalist-steps at least 1")
    if args.finetune_seed < 0:
        p.error("--finetune-seed must be 0 or more")
    if args.supernet_epochs < 1 or args.supernet_lr <= 0:
        p.error("--supernet-epochs must be at least 1 and --supernet-lr above 0")
    check_final_training(args)
    return args


def check_final_training(args) -> None:
    """Refuse bad --teacher-weight / --ema / --erase values before any stage trains (finetune's own
    settings check, so the ranges live in one place)."""
    from keras_supernet.run_folder import finetune_settings   # no TensorFlow: the settings live there

    given = {"teacher_weight": args.teacher_weight, "ema_decay": args.ema, "erase": args.erase}
    finetune_settings(**{k: v for k, v in given.items() if v is not None})


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    if args.reconvert:
        Bench(args).reconvert()
    elif args.verify_tflm:
        Bench(args).verify_tflm()
    elif args.score_proxy:
        Bench(args).score_proxy()
    else:
        Bench(args).run()
    print(f"done in {time.time() - started:.0f} s; wrote {args.results}")
    return 0


if __name__ == "__main__":
    from mcuformer.cli import run_guarded

    sys.exit(run_guarded(main))
