"""Training THA networks on the datasets the builder renders (torch only: a training machine has no Blender).

data.py reads a dataset folder as a torch Dataset; tasks.py says, per network, what goes in, what
comes out and what it is compared with; trainer.py runs the loop (checkpoints, validation, logs,
several processes through torchrun); commands.py is the `train` subcommand.
"""
