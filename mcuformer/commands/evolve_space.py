"""Evolve the search space (S3 / MCUFormer): score every dimension's choices by
E-T error under the budget, move each dimension one step downhill, retrain the
supernet briefly on the new space, repeat. Every round goes to
OUT/evolve_space.json; OUT/space_final.json is the evolved space (a space file
for `mcuformer train-supernet --space`). Run again to resume.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .arguments import add_budget, add_data, add_out, check_at_least, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("--supernet", required=True, type=path_arg,
                        help="supernet training folder of the starting space")
    add_budget(parser)
    parser.add_argument("--max-macs", type=int, help="optional cap on multiply-accumulates per inference")
    add_out(parser)
    add_data(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20,
                        help="random budget-feasible subnets scored per choice (E); the best 50 of them give T")
    parser.add_argument("--tolerance", type=float, default=0.002,
                        help="smallest E-T error change over one step that counts as a trend")
    parser.add_argument("--retrain-epochs", type=int, default=1, help="supernet epochs between rounds")
    parser.add_argument("--val-limit", type=int, default=0, help="score on the first N validation images (0 = all)")
    parser.add_argument("--seed", type=int, default=0)


def _budget_and_space(args):
    from keras_supernet.run_folder import trained_space
    from search.budget import Budget, check_feasible

    budget = Budget.from_args(args.board, args.sram, args.flash, args.max_macs)
    space = trained_space(args.supernet)
    check_feasible(space, budget)
    return budget, space


def check(args) -> None:
    _budget_and_space(args)
    check_at_least(args.retrain_epochs, 1, "--retrain-epochs")
    check_at_least(args.rounds, 1, "--rounds")
    check_at_least(args.samples, 1, "--samples")
    check_at_least(args.val_limit, 0, "--val-limit")
    check_out(args.out)
    check_data(args.data)


def run(args) -> int:
    from common import datasets
    from search.space_evolution import SpaceEvolution

    budget, space = _budget_and_space(args)
    out = Path(args.out)
    if args.force and out.exists():
        shutil.rmtree(out)
    data = datasets.load(args.data)

    def fitness_for(round_index, round_space):
        from search.fitness import SupernetFitness
        from search.retrain import supernet_for_round
        folder = supernet_for_round(Path(args.supernet), out, round_index, round_space, data, args.retrain_epochs)
        return SupernetFitness(folder, data, val_limit=args.val_limit, space=round_space)

    evolution = SpaceEvolution(space, budget, fitness_for, out, rounds=args.rounds, samples=args.samples,
                               tolerance=args.tolerance, seed=args.seed)
    result = evolution.run()
    for record in result["rounds"]:
        moves = ", ".join(f"{d} {v['action']}" for d, v in record["dimensions"].items() if v["action"] != "keep")
        print(f"round {record['round']}: {moves or 'no change'}")
    print(f"final space: {result['final_space']}")
    print(f"wrote {out / 'evolve_space.json'} and {out / 'space_final.json'}")
    return 0
