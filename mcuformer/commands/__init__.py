"""One module per `mcuformer` subcommand: `add_arguments(parser)` and `run(args)`."""
