"""The whole pipeline on Fashion-MNIST (Debian's dataset-fashion-mnist) on 2 CPU
cores: train a small supernet, search under a real board's budget (default: the
STM32L432KC, 64 KiB SRAM / 256 KiB flash, at most 1.8 M MACs per image), fine-tune
the winner on the full training set, convert it to int8 with the custom ops
(accuracy on the full 10,000-image test set, int8 by the numpy reference
interpreter), verify it in TFLM (host, and QEMU Cortex-M7 where the ARM toolchain
and a TFLM tree are present), and write OUT/summary.json and OUT/pareto.png. Run it
again to resume after an interruption."""
from .arguments import add_budget, add_data, check_data, check_out, path_arg


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="out/demo", type=path_arg, help="output folder (default out/demo)")
    parser.add_argument("--full", action="store_true", help="the real-size run (hours on a CPU)")
    parser.add_argument("--force", action="store_true", help="start over, deleting OUT")
    parser.add_argument("--no-qemu", action="store_true", help="skip the emulated Cortex-M7 run")
    add_budget(parser)
    parser.add_argument("--max-macs", type=int, help="cap on multiply-accumulates per inference (a latency budget)")
    add_data(parser)


def check(args) -> None:
    from mcuformer.demo import demo_budget

    demo_budget(args.board, args.sram, args.flash, args.max_macs)
    check_out(args.out)
    check_data(args.data)


def run(args) -> int:
    from mcuformer.demo import run_demo
    from common.units import format_bytes

    summary = run_demo(args.out, full=args.full, board=args.board, sram=args.sram, flash=args.flash,
                       data=args.data, qemu=False if args.no_qemu else None, force=args.force,
                       max_macs=args.max_macs)
    acc, sram = summary["accuracy"], summary["sram"]
    measured = sram["measured_arena_bytes_cortex_m"] or sram["measured_arena_bytes_host"]
    print(f"demo: {summary['architecture']['description']}")
    print(f"demo: accuracy float {acc['float']:.4f}, int8 {acc['int8']:.4f} on {acc['test_images']} test images "
          f"(int8 by the numpy reference interpreter)")
    required = sram.get("required_arena_bytes_cortex_m")      # None for a model converted before it was reported
    print(f"demo: arena {format_bytes(required) if required else 'not reported'} needed by AllocateTensors "
          f"(Cortex-M), {format_bytes(sram['predicted_arena_bytes_cortex_m'])} in use after it, measured {measured} B; "
          f"budget SRAM {format_bytes(summary['budget']['sram'])}, "
          f"flash {format_bytes(summary['budget']['flash'])}"
          + (f", MACs <= {summary['budget']['max_macs']:,}" if summary['budget'].get('max_macs') else ""))
    print(f"demo: wrote {args.out}/summary.json and {args.out}/pareto.png")
    return 0
