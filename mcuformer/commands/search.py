"""Evolutionary search for the most accurate subnet that fits the board.

Every candidate is checked against the SRAM (TFLM arena) and flash budgets with
the memory model; fitness is top-1 of its inherited supernet weights on the
validation split. Run the same command again to resume an interrupted search.
Writes OUT/search.json (best, whole population, Pareto front), OUT/best_subnet.json
(for `mcuformer finetune --arch`) and OUT/pareto.png.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from common.errors import UserError

from .arguments import add_budget, add_data, add_region_and_latency_budget, add_out, check_at_least, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("--supernet", required=True, type=path_arg,
                        help="supernet training folder (mcuformer train-supernet --out)")
    add_budget(parser)
    parser.add_argument("--max-macs", type=int, help="optional cap on multiply-accumulates per inference")
    add_region_and_latency_budget(parser)
    add_out(parser)
    add_data(parser)
    parser.add_argument("--val-limit", type=int, default=0, help="score on the first N validation images (0 = all)")
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--parents", type=int, default=10, help="top-k subnets that parent the next generation")
    parser.add_argument("--mutations", type=int, default=25)
    parser.add_argument("--crossovers", type=int, default=25)
    parser.add_argument("--mutation-prob", type=float, default=0.2, help="per-block gene mutation probability")
    parser.add_argument("--global-mutation-prob", type=float, default=0.4,
                        help="depth / embed dim / resolution / patch mutation probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finalists", type=int, default=0, metavar="K",
                        help="re-rank the K best by inherited accuracy (round-robin over a space's tokenizers) "
                             "with a short fine-tune each (search/proxy.py); the winner is the best of them "
                             "after it (0 = off)")
    parser.add_argument("--finalist-steps", type=int, default=400,
                        help="fine-tuning steps (batch 128) per finalist, scored on the validation split")
    parser.add_argument("--no-operator-integration", action="store_true",
                        help="plan memory for the plain TFLM builtin-op graph (all techniques off)")
    parser.add_argument("--no-patch-decomposition", action="store_true",
                        help="plan memory without patch-embedding decomposition")
    parser.add_argument("--no-token-overwrite", action="store_true", help="plan memory without token overwriting")


def _plan(args):
    """Budget, memory-plan techniques, space and settings, checked (no TensorFlow)."""
    from keras_supernet.run_folder import trained_space
    from memory_model.memory import Techniques
    from search.budget import Budget, check_feasible
    from search.evolution import EvolutionSettings

    budget = Budget.from_args(args.board, args.sram, args.flash, args.max_macs, external_flash=args.external_flash,
                              weights_in=args.weights_in, max_instructions=args.max_instructions,
                              max_latency_ms=args.max_latency_ms)
    techniques = (Techniques.off() if args.no_operator_integration
                  else Techniques(True, not args.no_patch_decomposition, not args.no_token_overwrite))
    space = trained_space(args.supernet)
    check_feasible(space, budget, techniques)
    settings = EvolutionSettings(population=args.population, generations=args.generations, parents=args.parents,
                                 mutations=args.mutations, crossovers=args.crossovers,
                                 mutation_prob=args.mutation_prob, global_mutation_prob=args.global_mutation_prob,
                                 seed=args.seed)
    return budget, techniques, space, settings


def check(args) -> None:
    _plan(args)
    check_at_least(args.val_limit, 0, "--val-limit")
    check_at_least(args.finalists, 0, "--finalists")
    check_at_least(args.finalist_steps, 1, "--finalist-steps")
    check_out(args.out)
    check_data(args.data)


def run(args) -> int:
    from common import datasets
    from search.budget import describe_instruction_estimate
    from search.evolution import CACHE_FILE, Search
    from search.fitness import FitnessCache, SupernetFitness, supernet_fitness_identity

    budget, techniques, space, settings = _plan(args)
    out = Path(args.out)
    if args.force and out.exists():
        shutil.rmtree(out)
    data = datasets.load(args.data)
    if data.num_classes != space.num_classes:
        raise UserError(f"dataset {data.name!r} has {data.num_classes} classes but the supernet's space has "
                        f"{space.num_classes}")
    FitnessCache(out / CACHE_FILE, supernet_fitness_identity(args.supernet, data, args.val_limit))
    fitness = SupernetFitness(args.supernet, data, val_limit=args.val_limit, space=space)
    print(f"searching space {space.name!r} under {budget.describe()}, memory plan: {techniques.describe()}")
    search = Search(space, budget, fitness, out, settings, techniques)
    result = search.run()
    if args.finalists:
        from search.proxy import FinetuneProxy

        tokenizers = len(space.branches)
        which = "best" if tokenizers == 1 else f"best, round-robin over {tokenizers} tokenizers,"
        print(f"re-ranking the {args.finalists} {which} by a {args.finalist_steps}-step fine-tune each")
        result = search.rerank_finalists(FinetuneProxy(args.supernet, data, args.finalist_steps, args.val_limit,
                                                       seed=args.seed, supernet=fitness.supernet),
                                         args.finalists)
    best = result["best"]
    proxy = f", {best['proxy']:.4f} after the finalists' fine-tune" if best.get("proxy") is not None else ""
    print(f"best: top-1 {best['accuracy']:.4f} (validation, inherited weights){proxy}, arena {best['cost']['sram']:,} B, "
          f"flash {best['cost']['flash']:,} B, {best['cost']['macs']:,} MACs: {best['describe']}")
    print(f"  flash split: {budget.split(best['cost']['model_bytes']).describe()}")
    if best["cost"].get("instructions_estimate") is not None:
        print(f"  {describe_instruction_estimate(best['cost']['instructions_estimate'], budget.clock_mhz)}")
    print(f"wrote {out / 'search.json'}, {out / 'best_subnet.json'}, {out / 'pareto.png'}")
    return 0
