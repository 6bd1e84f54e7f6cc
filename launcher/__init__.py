"""rlaunch: submit ResNeSt training, evaluation and export jobs to Slurm, Kubernetes or this machine."""
