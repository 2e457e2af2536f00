"""``python -m msma.synth`` (see msma/synth/cli.py)."""

from msma.synth.cli import main

main()
