"""Fine-tuning, in four modules (imported one by one: `make plan` reads `runs` without loading torch):

- `training.runs`: which runs a profile asks for (streams x losses x seeds, the robustness grid);
- `training.trainer`: one run with TRL's SFTTrainer (SFT or DFT), saved atomically;
- `training.fine_tune`: every run of the plan in order, keyed, resumable (notebook 04's work);
- `training.launch` / `training.job`: one run as `accelerate launch` of `python -m paradox.training.job`.
"""
