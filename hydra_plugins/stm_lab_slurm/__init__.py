"""stm_lab's SLURM launcher: hydra-submitit-launcher's, made safe for stm_lab runs.

``launcher=slurm`` (conf/launcher/slurm.yaml) selects it. Hydra imports this package on every
start-up to discover plugins, so nothing heavy is imported here.
"""
